"""An in-memory Kafka log and consumer: twins for unit tests (the producer twin writing into
the same log is ``workers.testing.memory_producer``).

Unlike the test broker it behaves like Apache Kafka where that matters here: end offsets are
the last offset + 1, retention can remove the head of a partition (``trim``), and a fetch
outside the log raises ``OffsetOutOfRangeError``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from kafka import TopicPartition
from kafka.errors import OffsetOutOfRangeError
from kafka.structs import OffsetAndTimestamp

from workers.kafka.codecs import PlainRecord

# The attributes of kafka-python's ``ConsumerRecord`` that the package reads.
MemoryRecord = PlainRecord


@dataclass(slots=True)
class _Partition:
    start: int = 0  # offset of the first record still kept
    records: list[MemoryRecord] = field(default_factory=list)

    @property
    def end(self) -> int:
        return self.start + len(self.records)


class MemoryLog:
    """Topics of partitions of records, shared by any number of ``MemoryConsumer``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._topics: dict[str, list[_Partition]] = {}

    def create_topic(self, topic: str, partitions: int) -> None:
        with self._lock:
            self._topics[topic] = [_Partition() for _ in range(partitions)]

    def delete_topic(self, topic: str) -> None:
        with self._lock:
            self._topics.pop(topic, None)

    def topics(self) -> set[str]:
        with self._lock:
            return set(self._topics)

    def append(
        self,
        topic: str,
        partition: int,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
        timestamp_ms: int | None = None,
    ) -> int:
        """Append one record; returns its offset."""
        with self._lock:
            part = self._topics[topic][partition]
            ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
            record = MemoryRecord(topic, partition, part.end, ts, key, value, list(headers))
            part.records.append(record)
            return record.offset

    def trim(self, topic: str, partition: int, new_start: int) -> None:
        """Drop records before ``new_start``, as retention does."""
        with self._lock:
            part = self._topics[topic][partition]
            drop = max(0, min(new_start, part.end) - part.start)
            part.records = part.records[drop:]
            part.start += drop

    def partition(self, topic: str, partition: int) -> _Partition:
        return self._topics[topic][partition]

    def partitions(self, topic: str) -> set[int] | None:
        parts = self._topics.get(topic)
        return None if parts is None else set(range(len(parts)))

    def ensure_topic(self, topic: str) -> int:
        """Create ``topic`` with one partition unless it exists; returns its partition count."""
        with self._lock:
            return len(self._topics.setdefault(topic, [_Partition()]))


class MemoryConsumer:
    """A consumer of a ``MemoryLog`` with manual assignment (the ``Consumer`` protocol)."""

    def __init__(self, log: MemoryLog) -> None:
        self.log = log
        self._positions: dict[TopicPartition, int | None] = {}
        self._paused: set[TopicPartition] = set()
        self.closed = False

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.log.partitions(topic)

    def topics(self) -> set[str]:
        return self.log.topics()

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        self._positions = {tp: self._positions.get(tp) for tp in partitions}
        self._paused &= set(partitions)

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused.update(tp for tp in partitions if tp in self._positions)

    def resume(self, *partitions: TopicPartition) -> None:
        self._paused.difference_update(partitions)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def assignment(self) -> set[TopicPartition]:
        return set(self._positions)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        if partition not in self._positions:
            raise AssertionError(f"{partition} is not assigned")
        self._positions[partition] = offset

    def position(self, partition: TopicPartition) -> int:
        position = self._positions[partition]
        if position is None:
            raise AssertionError(f"{partition} has no position (seek first)")
        return position

    def poll(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> Mapping[TopicPartition, Sequence[MemoryRecord]]:
        budget = max_records if max_records is not None else 500
        out: dict[TopicPartition, list[MemoryRecord]] = {}
        for tp, position in self._positions.items():
            if position is None or budget <= 0 or tp in self._paused:
                continue
            part = self.log.partition(tp.topic, tp.partition)
            if position < part.start or position > part.end:
                raise OffsetOutOfRangeError({tp: position})
            batch = part.records[position - part.start : position - part.start + budget]
            if batch:
                out[tp] = batch
                self._positions[tp] = batch[-1].offset + 1
                budget -= len(batch)
        return out

    def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.log.partition(tp.topic, tp.partition).start for tp in partitions}

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.log.partition(tp.topic, tp.partition).end for tp in partitions}

    def offsets_for_times(
        self, timestamps: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        out: dict[TopicPartition, OffsetAndTimestamp | None] = {}
        for tp, ts in timestamps.items():
            records = self.log.partition(tp.topic, tp.partition).records
            hit = next((r for r in records if r.timestamp >= ts), None)
            out[tp] = None if hit is None else OffsetAndTimestamp(hit.offset, hit.timestamp, -1)
        return out

    def close(self) -> None:
        self.closed = True
