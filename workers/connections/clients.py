"""How the clients of the cache are built and closed: the factories (the real libraries, or
fakes in unit tests), the Redis client's options, and closing without raising.

A cluster's consumers and producers are kafka-python's, or librdkafka's adapters
(``workers.kafka.rdkafka``, imported only then) where its ``client_library`` is ``confluent``.

Before a Kafka client is built, kafka-python's loggers get the guard that keeps its wire-level
records free of secrets (``workers.runtime.logmask``), whatever the process's logging.

A failure to build a client is a ``RecoverableError`` (the service may come back), noted in
the cache's outages so that a service that is down is not hammered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError
from redis.exceptions import RedisClusterException

from workers.config import Settings
from workers.config.redis_urls import parse_redis_url
from workers.connections.outages import Outages, shown
from workers.connections.redis_clients import redis_client
from workers.exceptions import RecoverableError
from workers.kafka import resume_fix
from workers.runtime.logmask import guard_kafka_logs, option_secrets

logger = logging.getLogger(__name__)


def _rdkafka_producer(**options: Any) -> Any:
    from workers.kafka.rdkafka import rdkafka_producer  # the [confluent] extra

    return rdkafka_producer(**options)


def _rdkafka_consumer(**options: Any) -> Any:
    from workers.kafka.rdkafka import rdkafka_consumer  # the [confluent] extra

    return rdkafka_consumer(**options)


@dataclass(frozen=True, slots=True)
class Factories:
    """How clients are built; unit tests pass fakes, production uses the real libraries.
    ``rdkafka_*`` build the consumers and producers of ``client_library: confluent``."""

    producer: Callable[..., Any] = KafkaProducer
    consumer: Callable[..., Any] = KafkaConsumer
    admin: Callable[..., Any] = KafkaAdminClient
    redis: Callable[..., Any] = redis_client
    rdkafka_producer: Callable[..., Any] = _rdkafka_producer
    rdkafka_consumer: Callable[..., Any] = _rdkafka_consumer


def redis_options(settings: Settings, url: str) -> dict[str, Any]:
    """Keyword arguments of the Redis client for ``url`` (``redis_clients.redis_client``): the
    configured socket timeout for connecting and for every command (to the Sentinels too), a
    health check of idle connections, and for a Sentinel URL the Sentinels' credentials."""
    timeout = settings.redis.socket_timeout
    options: dict[str, Any] = {
        "url": url,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": 30,
        "decode_responses": False,
    }
    if parse_redis_url(url).kind == "sentinel":
        options["sentinel_username"] = settings.redis.sentinel_username
        options["sentinel_password"] = settings.redis.sentinel_password
    return options


_ROLE = {"group": "consumer"}


def build(
    factories: Factories,
    outages: Outages,
    kind: str,
    name: str,
    options: Callable[[], dict[str, Any]],
    library: str = "kafka-python",
) -> Any:
    """A new ``kind`` client for cluster/URL ``name``, of the cluster's client ``library``; a
    failure is noted in ``outages`` and raised as ``RecoverableError``."""
    rdkafka = library == "confluent" and kind in ("producer", "consumer")
    # A "group" client (offset commits under a group id) is a kafka-python consumer.
    factory = getattr(factories, f"rdkafka_{kind}" if rdkafka else _ROLE.get(kind, kind))
    try:
        built = options()
        if kind != "redis":  # kafka-python logs what it sends at DEBUG: never the secrets
            guard_kafka_logs(option_secrets(built))
        if kind == "consumer":  # a resumed partition is fetched again (see the module)
            resume_fix.install()
        return factory(**built)
    except (KafkaError, OSError, redis.RedisError, RedisClusterException) as exc:
        outages.failed(kind, name, exc)
        raise RecoverableError(f"cannot create {kind} for {shown(name)}: {exc!r}") from exc


def close_quietly(kind: str, client: Any) -> None:
    """Close a client; a broken one must not make closing raise."""
    try:
        if kind == "producer":
            client.close(timeout=5)
        else:
            client.close()
    except Exception:  # noqa: BLE001 - closing a broken client must not raise
        logger.debug("closing %s failed", kind, exc_info=True)
