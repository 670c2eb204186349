"""The librdkafka producer adapter (``workers.kafka.rdkafka``) on a twin of librdkafka's handle:
its settings, futures that resolve from delivery reports, kafka-python's errors, and the
package's users of a producer (dead letters, ``KafkaQueue.put``) on it."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from kafka import TopicPartition
from kafka import errors as kafka_errors

pytest.importorskip("confluent_kafka", reason="confluent-kafka (the [confluent] extra) is absent")

from confluent_kafka import KafkaError  # noqa: E402

from tests.unit.fake_confluent import FakeRdKafkaProducer  # noqa: E402
from workers.exceptions import RecoverableError  # noqa: E402
from workers.kafka.deadletter import DeadLetters  # noqa: E402
from workers.kafka.queue_io import send_all  # noqa: E402
from workers.kafka.rdkafka import RdKafkaProducer  # noqa: E402
from workers.kafka.rdkafka.properties import producer_config  # noqa: E402
from workers.testing import MemoryLog, MemoryRecord  # noqa: E402

OPTIONS = {"bootstrap_servers": ["k1:9092"], "acks": "all"}


@pytest.fixture
def log() -> MemoryLog:
    log = MemoryLog()
    log.create_topic("out", 2)
    return log


def built(log: MemoryLog, **options: Any) -> tuple[RdKafkaProducer, FakeRdKafkaProducer]:
    handles: list[FakeRdKafkaProducer] = []

    def handle(conf: dict[str, Any]) -> FakeRdKafkaProducer:
        handles.append(FakeRdKafkaProducer(log, conf))
        return handles[-1]

    producer = RdKafkaProducer({**OPTIONS, **options}, handle=handle)
    return producer, handles[0]


# -- settings ----------------------------------------------------------------------------------


def test_idempotent_with_acks_all_and_keys_placed_as_kafka_python_places_them() -> None:
    conf = producer_config({**OPTIONS, "linger_ms": 5, "compression_type": None})

    assert conf["enable.idempotence"] is True
    assert conf["acks"] == "all"
    assert conf["partitioner"] == "murmur2_random"
    assert (conf["linger.ms"], conf["compression.type"]) == (5, "none")


@pytest.mark.parametrize(
    "conflict", [{"acks": 1}, {"retries": 0}, {"max_in_flight_requests_per_connection": 6}]
)
def test_settings_that_conflict_with_idempotence_turn_it_off_with_a_warning(
    conflict: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    conf = producer_config({**OPTIONS, **conflict})

    assert conf["enable.idempotence"] is False
    assert "idempotence off" in caplog.text


def test_idempotence_configured_is_kept_as_configured() -> None:
    assert producer_config({**OPTIONS, "enable_idempotence": False})["enable.idempotence"] is False
    # Explicitly on with acks=1: librdkafka refuses it, as kafka-python does.
    conf = producer_config({**OPTIONS, "acks": 1, "enable_idempotence": True})
    assert (conf["enable.idempotence"], conf["acks"]) == (True, "1")


def test_the_package_reads_what_it_reads_of_kafka_python_config(log: MemoryLog) -> None:
    producer, handle = built(log, delivery_timeout_ms=30_000)
    default, default_handle = built(log)

    assert producer.config["delivery_timeout_ms"] == handle.conf["delivery.timeout.ms"] == 30_000
    # What the package waits for is what librdkafka does: kafka-python's 120 s, not its 300 s.
    assert default.config["delivery_timeout_ms"] == default_handle.conf["delivery.timeout.ms"]
    assert default.config["delivery_timeout_ms"] == 120_000
    # Not kafka-python's DefaultPartitioner: the alarm stage lets librdkafka place keys.
    assert producer.config["partitioner"] == "murmur2_random"


# -- sends -------------------------------------------------------------------------------------


def test_a_future_resolves_with_the_record_metadata_once_delivered(log: MemoryLog) -> None:
    producer, handle = built(log)
    handle.hold = True
    future = producer.send("out", value=b"v", key=b"k", partition=1, headers=[("h", b"x")])

    assert not future.is_done
    handle.hold = False
    meta = future.get(timeout=1)

    assert future.succeeded() and not future.failed()
    assert (meta.topic, meta.partition, meta.offset) == ("out", 1, 0)
    assert meta.topic_partition == TopicPartition("out", 1)
    assert meta.serialized_value_size == 1
    assert log.partition("out", 1).records[0].headers == [("h", b"x")]


def test_a_failed_delivery_fails_the_future_with_kafka_pythons_error(log: MemoryLog) -> None:
    producer, handle = built(log)
    handle.fail_with = KafkaError(KafkaError._MSG_TIMED_OUT, "no broker answered")

    future = producer.send("out", value=b"v")
    producer.flush(timeout=1)

    assert future.failed()
    assert isinstance(future.exception, kafka_errors.KafkaTimeoutError)
    with pytest.raises(kafka_errors.KafkaTimeoutError, match="no broker answered"):
        future.get(timeout=1)


def test_flush_and_get_time_out_on_records_never_delivered(log: MemoryLog) -> None:
    producer, handle = built(log)
    handle.hold = True
    future = producer.send("out", value=b"v")

    with pytest.raises(kafka_errors.KafkaTimeoutError, match="1 records not delivered"):
        producer.flush(timeout=0.01)
    with pytest.raises(kafka_errors.KafkaTimeoutError):
        future.get(timeout=0.01)


def test_a_full_queue_is_waited_out(log: MemoryLog) -> None:
    producer, handle = built(log)
    handle.full_for = 2

    future = producer.send("out", value=b"v")

    assert future.get(timeout=1).offset == 0


def test_a_record_too_large_is_refused_at_send(log: MemoryLog) -> None:
    producer, _ = built(log, max_request_size=10)

    with pytest.raises(kafka_errors.MessageSizeTooLargeError):
        producer.send("out", value=b"x" * 11)


def test_close_delivers_what_is_queued(log: MemoryLog, caplog: pytest.LogCaptureFixture) -> None:
    producer, handle = built(log)
    handle.hold = True
    producer.send("out", value=b"v", partition=0)
    handle.hold = False

    producer.close(timeout=1)

    assert handle.closed and log.partition("out", 0).end == 1
    assert "undelivered" not in caplog.text


# -- the package's users of a producer ---------------------------------------------------------


def test_dead_letters_are_sent_and_confirmed(log: MemoryLog) -> None:
    producer, _ = built(log)
    letters = DeadLetters(lambda: producer, "common", "out", timeout=1)
    record = MemoryRecord("in", 3, 42, 1000, b"k", b"{bad", [("trace", b"1")])

    letters.send(record, "not JSON")
    confirmed = letters.flush()

    headers = dict(log.partition("out", 0).records[0].headers)
    assert confirmed == 1
    assert (headers["workers.reason"], headers["workers.offset"]) == (b"not JSON", b"42")


def test_dead_letters_that_fail_are_a_recoverable_error(log: MemoryLog) -> None:
    producer, handle = built(log)
    handle.fail_with = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "denied")
    letters = DeadLetters(lambda: producer, "common", "out", timeout=1)

    letters.send(MemoryRecord("in", 0, 1, 1000, None, b"x", []), "bad")

    with pytest.raises(RecoverableError, match="1 dead letters"):
        letters.flush()


def test_queue_put_counts_what_was_confirmed(
    log: MemoryLog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    producer, _ = built(log)

    sent = send_all(producer, "out", [b"a", b"b", b"c"], partition=1)

    assert sent == 3
    assert [r.value for r in log.partition("out", 1).records] == [b"a", b"b", b"c"]
