"""The clients of one operator command: settings and a connection cache that fails fast."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from workers.config import PipelineConfig, Settings, reload_settings
from workers.connections import Connections, Factories
from workers.engine import space_for
from workers.exceptions import WorkersError
from workers.keys import Space
from workers.leases import Owner, RedisLeases
from workers.ledger import RedisLedger
from workers.offsets import RedisOffsetStore


class OpsError(WorkersError):
    """An operator command cannot do what was asked; the message says why, in one line."""


def _bounded(factory: Callable[..., Any], timeout_ms: int) -> Callable[..., Any]:
    """``factory`` that gives up bootstrapping after ``timeout_ms`` unless configured."""

    def build(**options: Any) -> Any:
        return factory(**{"bootstrap_timeout_ms": timeout_ms, **options})

    return build


@dataclass
class Ops:
    """Settings of ``app`` and clients that give up on an unreachable cluster after
    ``timeout`` seconds (kafka-python waits 30 s by default), for a person at a terminal."""

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
