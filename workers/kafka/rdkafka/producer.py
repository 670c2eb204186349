"""The package's producer on librdkafka: what ``KafkaProducer`` offers the package (``send``
returning a future, ``flush``, ``close``, ``config``, ``partitions_for``), on a confluent-kafka
producer.

A future resolves from librdkafka's delivery report. Reports are served by ``send`` (without
waiting), ``flush`` and a future's ``get``, in whichever thread calls them: one producer is
shared by the threads of a process. Idempotence is on unless configured off, as kafka-python
3's default is, and keys go to the partitions kafka-python and Java would choose (murmur2).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import confluent_kafka
from kafka import TopicPartition
from kafka import errors as kafka_errors
from kafka.future import Future
from kafka.producer.future import RecordMetadata

from workers.kafka.rdkafka.base import Handle, Problems, handle_config, track, translate
from workers.kafka.rdkafka.properties import producer_config

logger = logging.getLogger(__name__)

MAX_BLOCK_SECONDS = 60.0  # kafka-python's max_block_ms: how long a full queue is waited out


class DeliveryFuture(Future):  # type: ignore[misc]  # kafka-python ships no types
    """kafka-python's ``Future`` of one send: ``succeeded()``, ``failed()``, ``exception``,
    ``is_done``, and ``get(timeout)`` returning a ``RecordMetadata``."""

    __slots__ = ("_serve",)

    def __init__(self, serve: Callable[[float], Any]) -> None:
        super().__init__()
        self._serve = serve

    def delivered(self, error: Any, message: Any) -> None:
        """librdkafka's delivery report (its ``on_delivery``)."""
        if error is not None:
            self.failure(translate(error))
            return
        key, value = message.key(), message.value()
        topic, partition = message.topic(), message.partition()
        found = {
            "topic": topic,
            "partition": partition,
            "topic_partition": TopicPartition(topic, partition),
            "offset": message.offset(),
            "timestamp": message.timestamp()[1],
            "checksum": None,
            "serialized_key_size": -1 if key is None else len(key),
            "serialized_value_size": -1 if value is None else len(value),
        }
        self.success(RecordMetadata(*(found.get(f, -1) for f in RecordMetadata._fields)))

    def get(self, timeout: float | None = None) -> Any:
        """The record's metadata once delivered; raises its error if it failed, and
        ``KafkaTimeoutError`` if not done within ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_done:
            left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if left <= 0:
                raise kafka_errors.KafkaTimeoutError(f"Timeout after waiting for {timeout} secs.")
            self._serve(left)
        if self.exception is not None:
            raise self.exception
        return self.value


class RdKafkaProducer(Handle):
    """A librdkafka producer as ``KafkaProducer`` is used by the package (see the module).

    ``send`` raises what kafka-python's would at once: ``MessageSizeTooLargeError`` for a record
    over ``max_request_size``, ``KafkaTimeoutError`` when the queue stays full for 60 s.
    ``flush`` raises ``KafkaTimeoutError`` when records are still undelivered at its timeout.
    """

    def __init__(
        self,
        options: Mapping[str, Any],
        *,
        handle: Callable[[dict[str, Any]], Any] = confluent_kafka.Producer,
    ) -> None:
        self._problems = Problems("producer")
        conf = {**producer_config(options), **handle_config(self._problems)}
        try:
            self._rd = handle(conf)
        except (confluent_kafka.KafkaException, ValueError, TypeError) as exc:
            raise kafka_errors.KafkaConfigurationError(f"librdkafka producer: {exc}") from exc
        # What the package reads of KafkaProducer.config; "partitioner" says it is not
        # kafka-python's DefaultPartitioner (librdkafka places keys itself).
        self.config = {
            "delivery_timeout_ms": int(conf["delivery.timeout.ms"]),
            "partitioner": conf["partitioner"],
            "enable_idempotence": conf.get("enable.idempotence", False),
        }
        # partitions_for waits as long as kafka-python's requests would.
        self._timeout = int(options.get("request_timeout_ms", 30_000)) / 1000
        self._abandoned = False
        track(self)

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> DeliveryFuture:
        """Queue one record; the future resolves when the broker confirmed it or it failed."""
        self._check()
        future = DeliveryFuture(self._rd.poll)
        give_up = time.monotonic() + MAX_BLOCK_SECONDS
        while True:
            try:
                self._rd.produce(
                    topic, value, key,
                    partition=-1 if partition is None else partition,
                    on_delivery=future.delivered,
                    timestamp=timestamp_ms or 0,
                    headers=list(headers) if headers else None,
                )  # fmt: skip
                break
            except BufferError:  # the queue is full: serve reports until there is room
                if time.monotonic() >= give_up:
                    raise kafka_errors.KafkaTimeoutError(
                        f"librdkafka's queue stayed full for {MAX_BLOCK_SECONDS:g} s"
                    ) from None
                self._rd.poll(0.05)
            except confluent_kafka.KafkaException as exc:
                raise translate(exc) from exc
        self._rd.poll(0)
        return future

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued record is delivered or failed (their futures resolved)."""
        self._check()
        left = self._rd.flush(-1 if timeout is None else timeout)
        if left:
            raise kafka_errors.KafkaTimeoutError(f"{left} records not delivered within {timeout} s")

    def partitions_for(self, topic: str) -> set[int]:
        """The topic's partitions, from the cluster's metadata."""
        self._check()
        try:
            found = self._rd.list_topics(topic, timeout=self._timeout).topics.get(topic)
        except confluent_kafka.KafkaException as exc:
            raise translate(exc) from exc
        if found is None or found.error is not None or not found.partitions:
            raise kafka_errors.UnknownTopicOrPartitionError(f"no partitions for {topic!r}")
        return set(found.partitions)

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued (up to ``timeout`` seconds), then close. Not in a forked child."""
        if self._abandoned:
            return
        try:
            self.flush(timeout)
        except kafka_errors.KafkaTimeoutError as exc:
            logger.warning("librdkafka producer closed with records undelivered: %s", exc)
        finally:
            close = getattr(self._rd, "close", None)  # older releases have none: freed instead
            if close is not None:
                close()


def rdkafka_producer(**options: Any) -> RdKafkaProducer:
    """``RdKafkaProducer`` with kafka-python's keyword arguments (``Factories.producer``'s form)."""
    return RdKafkaProducer(options)
