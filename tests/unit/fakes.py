"""The fakes unit tests use: clients that record how they were built, and a manual clock."""

from __future__ import annotations

from typing import Any

from kafka.errors import KafkaTimeoutError

from workers.connections import Factories


class FakeClient:
    """Stands in for a kafka-python or redis client; remembers its options and closing."""

    def __init__(self, kind: str, **options: Any) -> None:
        self.kind = kind
        self.options = options
        self.closed = False

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


class ClientFactory:
    """Builds FakeClients; raises KafkaTimeoutError, as kafka-python does, while ``down``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.built: list[FakeClient] = []
        self.attempts = 0
        self.down = False

    def __call__(self, **options: Any) -> FakeClient:
        self.attempts += 1
        if self.down:
            raise KafkaTimeoutError("Unable to bootstrap")
        client = FakeClient(self.kind, **options)
        self.built.append(client)
        return client


class FakeFactories:
    def __init__(self) -> None:
        self.producer = ClientFactory("producer")
        self.consumer = ClientFactory("consumer")
        self.admin = ClientFactory("admin")
        self.redis = ClientFactory("redis")

    def factories(self) -> Factories:
        return Factories(
            producer=self.producer, consumer=self.consumer, admin=self.admin, redis=self.redis
        )


class ManualClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
