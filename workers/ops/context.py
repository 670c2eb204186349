"""The clients of one operator command: settings and a connection cache that fails fast."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from redis.backoff import NoBackoff
from redis.retry import Retry

from workers.config import PipelineConfig, Settings, reload_settings
from workers.config.masking import clip
from workers.connections import Connections, Factories
from workers.connections.redis_clients import redis_client
from workers.exceptions import WorkersError
from workers.pulling.engine import space_for
from workers.state.keys import Space
from workers.state.leases import Owner, RedisLeases
from workers.state.ledger_redis import RedisLedger
from workers.state.offsets import RedisOffsetStore


class OpsError(WorkersError):
    """An operator command cannot do what was asked; the message says why, in one line."""


def _bounded(factory: Callable[..., Any], timeout_ms: int) -> Callable[..., Any]:
    """``factory`` that gives up bootstrapping after ``timeout_ms`` unless configured. An
    option kafka-python refuses (a pass-through option of the wrong type) is an ``OpsError``
    naming the client, not a traceback."""

    def build(**options: Any) -> Any:
        try:
            return factory(**{"bootstrap_timeout_ms": timeout_ms, **options})
        except (TypeError, ValueError, AssertionError) as exc:
            reason = clip(" ".join(str(exc).split()), 200) or type(exc).__name__
            raise OpsError(
                f"kafka-python refused the options of a {factory.__name__}: "
                f"{type(exc).__name__}: {reason} (check the cluster's settings)"
            ) from exc

    return build


def _bounded_redis(timeout: float) -> Callable[..., Any]:
    """A Redis client that waits at most ``timeout`` seconds for a connection or an answer
    (or its configured socket timeout, if shorter), and retries only a broken connection,
    once: a silent server costs one timeout per command, not four."""

    def build(**options: Any) -> Any:
        for key in ("socket_timeout", "socket_connect_timeout"):
            configured = options.get(key)
            options[key] = timeout if configured is None else min(configured, timeout)
        retry = Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))
        return redis_client(retry=retry, **options)

    return build


@dataclass
class Ops:
    """Settings of ``app`` and clients that give up on an unreachable cluster, or a Redis
    that does not answer, after ``timeout`` seconds (kafka-python waits 30 s by default), for
    a person at a terminal."""

    app: Any
    settings: Settings
    connections: Connections

    @classmethod
    def for_app(cls, app: Any, timeout: float = 10.0) -> Ops:
        settings = reload_settings(app)  # ConfigError names the key and the expected form
        ms = int(timeout * 1000)
        factories = Factories(
            producer=_bounded(KafkaProducer, ms),
            consumer=_bounded(KafkaConsumer, ms),
            admin=_bounded(KafkaAdminClient, ms),
            redis=_bounded_redis(timeout),
        )
        return cls(app, settings, Connections(settings, factories=factories, error_backoff=60.0))

    def close(self) -> None:
        self.connections.close()

    def pipeline(self, name: str) -> PipelineConfig:
        try:
            return self.settings.pipeline(name)
        except KeyError as exc:
            raise OpsError(exc.args[0]) from None

    def cluster(self, name: str) -> str:
        """``name`` if it is a configured cluster, else ``OpsError`` naming the known ones."""
        try:
            return self.settings.cluster(name).name
        except KeyError as exc:
            raise OpsError(exc.args[0]) from None

    def space(self, pipeline: PipelineConfig) -> Space:
        return space_for(self.settings, pipeline)

    def redis(self) -> Any:
        return self.connections.redis()

    def store(self) -> RedisOffsetStore:
        return RedisOffsetStore(self.redis(), ttl=self.settings.redis.offset_ttl_seconds)

    def ledger(self) -> RedisLedger:
        return RedisLedger(self.redis(), ttl=self.settings.redis.offset_ttl_seconds)

    def leases(self, pipeline: PipelineConfig) -> RedisLeases:
        return RedisLeases(self.redis(), Owner.current("cli"), pipeline.lease_ttl_seconds)

    def partitions(self, cluster: str, topic: str) -> list[int]:
        """The topic's partitions; ``OpsError`` when it does not exist."""
        found = self.connections.consumer(cluster).partitions_for_topic(topic)
        if not found:
            raise OpsError(
                f"topic {topic!r} does not exist on cluster {cluster!r} "
                "(create it with `workers topics create`)"
            )
        return sorted(found)
