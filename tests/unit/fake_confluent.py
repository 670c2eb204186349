"""A twin of librdkafka's consumer and producer handles (confluent-kafka's ``Consumer`` and
``Producer``) over a ``MemoryLog``, for unit tests of ``workers.kafka.rdkafka``.

It does what librdkafka 2.16 was seen to do against the embedded broker: each partition of the
assignment has a fetch position and an application position (after the last message
returned); messages are fetched ahead into one queue, a few per partition per ``consume``
and handed out from the next ``consume`` on (fetching runs beside the application); a seek
or a pause drops what was fetched for the partition and a resume fetches from the
application position; ``consume(n, t)`` returns up to ``n`` queued messages. What the broker
would refuse it reports as librdkafka does with ``auto.offset.reset: error``: one error
message (``_AUTO_OFFSET_RESET``, at the failed offset), after which the partition is not
fetched until it is seeked. Messages are real ``confluent_kafka.Message`` objects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import confluent_kafka
from confluent_kafka import KafkaError, KafkaException, Message

from workers.testing import MemoryLog

Key = tuple[str, int]
FETCH_AHEAD = 4  # messages fetched per partition per consume, ahead of what is returned


class FakeRdKafkaConsumer:
    def __init__(self, log: MemoryLog, conf: dict[str, Any]) -> None:
        self.log = log
        self.conf = conf
        self.fetch_at: dict[Key, int] = {}
        self.app_at: dict[Key, int] = {}
        self.paused: set[Key] = set()
        self.stopped: set[Key] = set()  # after an out-of-range error, until a seek
        self.queue: list[Message] = []
        self.consumes: list[tuple[int, float]] = []
        self.seeks: list[tuple[Key, int]] = []
        self.closed = False
        self.refuse_seek = False  # librdkafka may refuse to seek a partition in error

    # -- assignment --------------------------------------------------------------------------

    def incremental_assign(self, partitions: list[Any]) -> None:
        for tp in partitions:
            key = (tp.topic, tp.partition)
            if key in self.fetch_at:
                raise KafkaException(KafkaError(KafkaError._CONFLICT, f"{key} already assigned"))
            self.fetch_at[key] = self.app_at[key] = tp.offset

    def incremental_unassign(self, partitions: list[Any]) -> None:
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self.fetch_at.pop(key, None)
            self.app_at.pop(key, None)
            self.paused.discard(key)
            self.stopped.discard(key)
            self._drop(key)

    def seek(self, tp: Any) -> None:
        key = (tp.topic, tp.partition)
        if key not in self.fetch_at or self.refuse_seek:
            raise KafkaException(KafkaError(KafkaError._STATE, "Erroneous state"))
        self.seeks.append((key, tp.offset))
        self._drop(key)
        self.fetch_at[key] = self.app_at[key] = tp.offset
        self.stopped.discard(key)

    def pause(self, partitions: list[Any]) -> None:
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self.paused.add(key)
            self._drop(key)
            self.fetch_at[key] = self.app_at[key]

    def resume(self, partitions: list[Any]) -> None:
        for tp in partitions:
            self.paused.discard((tp.topic, tp.partition))

    # -- messages ----------------------------------------------------------------------------

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        self.consumes.append((num_messages, timeout))
        out, self.queue = self.queue[:num_messages], self.queue[num_messages:]
        for m in out:
            if m.error() is None:
                self.app_at[(m.topic(), m.partition())] = m.offset() + 1  # type: ignore[index,operator]
        self._fetch()
        return out

    def inject(self, code: int, topic: str, partition: int, offset: int = -1001) -> None:
        """Queue an error message for a partition, after what is fetched already."""
        error = KafkaError(code, f"injected {code}")
        self.queue.append(Message(topic=topic, partition=partition, offset=offset, error=error))

    def close(self) -> None:
        self.closed = True

    def _fetch(self) -> None:
        for key, at in list(self.fetch_at.items()):
            if key in self.paused or key in self.stopped or at < 0:
                continue
            part = self.log.partition(*key)
            if not part.start <= at <= part.end:
                error = KafkaError(KafkaError._AUTO_OFFSET_RESET, "Offset out of range")
                self.queue.append(Message(topic=key[0], partition=key[1], offset=at, error=error))
                self.stopped.add(key)
                continue
            for r in part.records[at - part.start : at - part.start + FETCH_AHEAD]:
                self.queue.append(
                    Message(
                        topic=r.topic, partition=r.partition, offset=r.offset, key=r.key,
                        value=r.value, headers=list(r.headers) or None,
                        timestamp=(confluent_kafka.TIMESTAMP_CREATE_TIME, r.timestamp),
                    )
                )  # fmt: skip
                self.fetch_at[key] = r.offset + 1

    def _drop(self, key: Key) -> None:
        self.queue = [m for m in self.queue if (m.topic(), m.partition()) != key]


class FakeRdKafkaProducer:
    """Queues sends; ``poll``/``flush`` deliver them into the log (or fail them with
    ``fail_with``), calling each one's ``on_delivery`` as librdkafka does."""

    def __init__(self, log: MemoryLog, conf: dict[str, Any]) -> None:
        self.log = log
        self.conf = conf
        self.pending: list[tuple[dict[str, Any], Callable[..., Any]]] = []
        self.fail_with: KafkaError | None = None
        self.hold = False  # keep sends undelivered (a broker that does not answer)
        self.full_for = 0  # produce raises BufferError this many times first
        self.closed = False

    def produce(self, topic: str, value: Any = None, key: Any = None, **kw: Any) -> None:
        if self.full_for:
            self.full_for -= 1
            raise BufferError("Local: Queue full")
        limit = int(self.conf.get("message.max.bytes", 1_000_000))
        if len(value or b"") > limit:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too large"))
        self.pending.append(({"topic": topic, "value": value, "key": key, **kw}, kw["on_delivery"]))

    def poll(self, timeout: float = -1) -> int:
        if self.hold:
            return 0
        done, self.pending = self.pending, []
        for send, callback in done:
            if self.fail_with is not None:
                callback(self.fail_with, Message(topic=send["topic"]))
                continue
            partition = send["partition"] if send["partition"] >= 0 else 0
            offset = self.log.append(
                send["topic"], partition, send["value"], key=send["key"],
                headers=send["headers"] or (),
            )  # fmt: skip
            record = self.log.partition(send["topic"], partition).records[-1]
            callback(
                None,
                Message(
                    topic=send["topic"], partition=partition, offset=offset, key=send["key"],
                    value=send["value"], timestamp=(1, record.timestamp),
                ),
            )  # fmt: skip
        return len(done)

    def flush(self, timeout: float = -1) -> int:
        self.poll(0)
        return len(self.pending)

    def close(self) -> None:
        self.closed = True
