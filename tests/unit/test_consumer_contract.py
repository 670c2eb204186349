"""The consumer contract on the in-memory twin (a manual clock stamps records, no sockets)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import pytest

from tests.contracts.consumer import Append, Clock, ConsumerContract, MakeConsumer, MakeTopic, Pause
from tests.unit.fakes import ManualClock
from workers.testing import MemoryConsumer, MemoryLog


class TestMemoryTwin(ConsumerContract):
    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock()

    @pytest.fixture
    def now_ms(self, clock: ManualClock) -> Clock:
        return lambda: int(clock() * 1000)

    @pytest.fixture
    def pause(self, clock: ManualClock) -> Pause:
        return clock.advance

    @pytest.fixture
    def log(self) -> MemoryLog:
        return MemoryLog()

    @pytest.fixture
    def make_topic(self, log: MemoryLog) -> MakeTopic:
        def make(partitions: int) -> str:
            topic = f"test-{uuid.uuid4().hex[:12]}"
            log.create_topic(topic, partitions)
            return topic

        return make

    @pytest.fixture
    def append(self, log: MemoryLog, now_ms: Clock) -> Append:
        def append(
            topic: str,
            partition: int,
            value: bytes | None,
            key: bytes | None = None,
            headers: Sequence[tuple[str, bytes]] = (),
        ) -> int:
            return log.append(
                topic, partition, value, key=key, headers=headers, timestamp_ms=now_ms()
            )

        return append

    @pytest.fixture
    def consumer(self, log: MemoryLog) -> MakeConsumer:
        return lambda: MemoryConsumer(log)
