"""The Kafka consumer seam: the part of kafka-python's ``KafkaConsumer`` the package uses.

Logic takes a ``Consumer`` as an argument; production passes a real ``KafkaConsumer`` from the
connection cache, unit tests the twin ``workers.testing.memory_log.MemoryConsumer``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from kafka import TopicPartition


class Consumer(Protocol):
    """Manual assignment only: no group membership, no auto commit. A paused partition keeps
    its position and returns no records until resumed.

    ``poll`` raises ``kafka.errors.OffsetOutOfRangeError({tp: offset})`` when the broker says a
    fetch position is outside the log, as Kafka does with ``auto_offset_reset='none'``.
    """

    def partitions_for_topic(self, topic: str) -> set[int] | None: ...

    def topics(self) -> set[str]:
        """Every topic of the cluster, from a fresh metadata request."""
        ...

    def assign(self, partitions: Sequence[TopicPartition]) -> None: ...

    def assignment(self) -> set[TopicPartition]: ...

    def seek(self, partition: TopicPartition, offset: int) -> None: ...

    def position(self, partition: TopicPartition) -> int: ...

    def pause(self, *partitions: TopicPartition) -> None: ...

    def resume(self, *partitions: TopicPartition) -> None: ...

    def paused(self) -> set[TopicPartition]: ...

    def poll(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> Mapping[TopicPartition, Sequence[Any]]: ...

    def beginning_offsets(
        self, partitions: Iterable[TopicPartition]
    ) -> Mapping[TopicPartition, int]: ...

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> Mapping[TopicPartition, int]: ...

    def offsets_for_times(
        self, timestamps: Mapping[TopicPartition, int]
    ) -> Mapping[TopicPartition, Any]: ...
