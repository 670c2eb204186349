"""An in-memory producer into a ``MemoryLog``: the twin of kafka-python's ``KafkaProducer``
for unit tests. Sends are acknowledged at ``flush``, as the real producer's are."""

from __future__ import annotations

import itertools
import threading
import time
import zlib
from dataclasses import dataclass

from kafka import TopicPartition
from kafka.errors import IllegalStateError, MessageSizeTooLargeError
from kafka.producer.future import RecordMetadata
from kafka.record.default_records import DefaultRecordBatchBuilder

from workers.testing.memory_log import MemoryLog


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
