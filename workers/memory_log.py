"""An in-memory Kafka log with a consumer and a producer: twins for unit tests.

Unlike the test broker it behaves like Apache Kafka where that matters here: end offsets are
the last offset + 1, retention can remove the head of a partition (``trim``), and a fetch
outside the log raises ``OffsetOutOfRangeError``. Sends are acknowledged at ``flush``.
"""

from __future__ import annotations

import itertools
import threading
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from kafka import TopicPartition
from kafka.errors import IllegalStateError, MessageSizeTooLargeError, OffsetOutOfRangeError
from kafka.producer.future import RecordMetadata
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.structs import OffsetAndTimestamp


@dataclass(frozen=True, slots=True)
class MemoryRecord:
    """The attributes of kafka-python's ``ConsumerRecord`` that the package reads."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


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
        self.closed = False

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.log.partitions(topic)

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        self._positions = {tp: self._positions.get(tp) for tp in partitions}

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
            if position is None or budget <= 0:
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


class MemoryFuture:
    """The part of kafka-python's ``FutureRecordMetadata`` the package reads.

    Not done until the producer delivers it (``flush``, or ``get``, which waits for it).
    """

    def __init__(self, producer: MemoryProducer | None = None) -> None:
        self._producer = producer
        self.is_done = False
        self.value: RecordMetadata | None = None
        self.exception: Exception | None = None

    def succeeded(self) -> bool:
        return self.is_done and self.exception is None

    def failed(self) -> bool:
        return self.is_done and self.exception is not None

    def complete(self, value: RecordMetadata | None, exception: Exception | None) -> MemoryFuture:
        self.value, self.exception, self.is_done = value, exception, True
        return self

    def get(self, timeout: float | None = None) -> RecordMetadata:
        """The record's metadata; raises the send's exception if it failed."""
        if not self.is_done and self._producer is not None:
            self._producer.deliver()
        if self.exception is not None:
            raise self.exception
        assert self.value is not None
        return self.value


@dataclass(slots=True)
class _Send:
    future: MemoryFuture
    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp_ms: int | None
    error: Exception | None


class MemoryProducer:
    """A producer into a ``MemoryLog``: the subset of kafka-python's ``KafkaProducer`` in use.

    ``send`` checks its arguments as kafka-python does and queues the record; ``flush`` appends
    the queued records to the log and completes their futures. Knobs for tests:
    ``max_request_size`` (a larger record fails its future with ``MessageSizeTooLargeError``,
    as kafka-python 2.x does; with ``too_large_raises`` send raises it, as 3.x does),
    ``send_error`` (send raises it at once, as kafka-python does when it gets no metadata for
    the topic within ``max_block_ms``), ``broken`` (every send while it is set fails its
    future with it) and ``flush_error`` (flush raises it and delivers nothing).
    """

    def __init__(self, log: MemoryLog, max_request_size: int = 1048576) -> None:
        self.log = log
        self.max_request_size = max_request_size
        self.too_large_raises = False
        self.send_error: Exception | None = None
        self.broken: Exception | None = None
        self.flush_error: Exception | None = None
        self.closed = False
        self._queue: list[_Send] = []
        self._round_robin = itertools.count()
        self._lock = threading.Lock()

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> MemoryFuture:
        """Queue one record. Raises what kafka-python raises for bad arguments."""
        if self.closed:
            raise IllegalStateError("KafkaProducer already closed!")
        if value is None and key is None:
            raise ValueError("Need at least one: key or value")
        headers = [] if headers is None else headers
        if not isinstance(headers, list):
            raise TypeError("headers must be list-type")
        if not all(isinstance(h, tuple) and len(h) == 2 and _header(*h) for h in headers):
            raise TypeError("All headers items must be (str, bytes) tuples")
        if self.send_error is not None:
            raise self.send_error
        count = self.log.ensure_topic(topic)  # auto-create, as a default broker does
        if partition is None:
            turn = zlib.crc32(key) if key is not None else next(self._round_robin)
            partition = turn % count
        elif not 0 <= partition < count:
            raise ValueError(f"topic {topic!r} has no partition {partition}")
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
        if size > self.max_request_size:
            error = MessageSizeTooLargeError(f"The message is {size} bytes when serialized")
            if self.too_large_raises:
                raise error
            return MemoryFuture().complete(None, error)
        future = MemoryFuture(self)
        send = _Send(future, topic, partition, key, value, list(headers), timestamp_ms, self.broken)
        with self._lock:
            self._queue.append(send)
        return future

    def flush(self, timeout: float | None = None) -> None:
        """Deliver every queued record; raises ``flush_error`` (delivering nothing) if set."""
        if self.flush_error is not None:
            raise self.flush_error
        self.deliver()

    def deliver(self) -> None:
        """Append the queued records to the log and complete their futures."""
        with self._lock:
            queue, self._queue = self._queue, []
        for s in queue:
            if s.error is not None:
                s.future.complete(None, s.error)
                continue
            ts = int(time.time() * 1000) if s.timestamp_ms is None else s.timestamp_ms
            offset = self.log.append(
                s.topic, s.partition, s.value, key=s.key, headers=s.headers, timestamp_ms=ts
            )
            sizes = [-1 if b is None else len(b) for b in (s.key, s.value)]
            header_size = sum(len(n.encode()) + len(d) for n, d in s.headers) if s.headers else -1
            tp = TopicPartition(s.topic, s.partition)
            metadata = RecordMetadata(
                s.topic, s.partition, tp, offset, ts, None, *sizes, header_size
            )
            s.future.complete(metadata, None)

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


def _header(name: object, data: object) -> bool:
    return isinstance(name, str) and isinstance(data, bytes)
