"""The Celery broker of a test: Redis unless the test parametrizes ``celery_broker``
(``ON_EVERY_BROKER``: Redis and RabbitMQ). ``Broker`` reads queues with the broker's own client,
not through the package, so the tests check the package's view of them independently."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import amqp
import pytest
import redis
from kombu.utils.url import parse_url

BROKERS = ("redis", "rabbitmq")
ON_EVERY_BROKER = pytest.mark.parametrize("celery_broker", BROKERS, indirect=True)


@dataclass(frozen=True)
class Peeked:
    """What a message in a queue says about itself."""

    headers: dict[str, Any]
    content_type: str
    routing_key: str


@dataclass(frozen=True)
class Broker:
    kind: str  # "redis" or "rabbitmq"
    url: str

    def depth(self, queue: str) -> int:
        """Messages ready in ``queue`` (0 when it does not exist)."""
        if self.kind == "redis":
            with self._redis() as client:
                return int(client.llen(queue))
        with self._amqp() as channel:
            try:
                return int(channel.queue_declare(queue, passive=True).message_count)
            except amqp.exceptions.NotFound:
                return 0

    def peek(self, queue: str) -> Peeked:
        """One message of ``queue``, left in it."""
        if self.kind == "redis":
            with self._redis() as client:
                raw = client.lindex(queue, 0)
            assert raw is not None, f"queue {queue!r} is empty"
            envelope = json.loads(raw)
            return Peeked(
                envelope["headers"],
                envelope["content-type"],
                envelope["properties"]["delivery_info"]["routing_key"],
            )
        with self._amqp() as channel:  # unacknowledged: back in the queue when it closes
            message = channel.basic_get(queue)
            assert message is not None, f"queue {queue!r} is empty"
            return Peeked(
                dict(message.headers), message.content_type, message.delivery_info["routing_key"]
            )

    def purge(self, queue: str) -> None:
        if self.kind == "redis":
            with self._redis() as client:
                client.delete(queue)
            return
        with self._amqp() as channel:
            channel.queue_purge(queue)

    @contextmanager
    def _redis(self) -> Iterator[redis.Redis]:
        client = redis.Redis.from_url(self.url, socket_timeout=10)
        try:
            yield client
        finally:
            client.close()

    @contextmanager
    def _amqp(self) -> Iterator[Any]:
        parts = parse_url(self.url)
        connection = amqp.Connection(
            f"{parts['hostname']}:{parts['port'] or 5672}",
            userid=parts["userid"] or "guest",
            password=parts["password"] or "guest",
            virtual_host=parts["virtual_host"] or "/",
            connect_timeout=10,
            read_timeout=10,
        )
        connection.connect()
        try:
            yield connection.channel()
        finally:
            connection.close()


@pytest.fixture
def celery_broker(request: pytest.FixtureRequest) -> Broker:
    """The test's Celery broker: Redis (database 1 of the session's server) unless
    parametrized with ``"rabbitmq"`` (the session's RabbitMQ node, started on first use).
    Tests keep apart by queue names of their own."""
    kind = str(getattr(request, "param", "redis"))
    if kind == "rabbitmq":
        return Broker(kind, str(request.getfixturevalue("rabbitmq_url")))
    redis_url = str(request.getfixturevalue("redis_url"))
    return Broker("redis", redis_url.rsplit("/", 1)[0] + "/1")
