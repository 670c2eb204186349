"""Dead letters over the producer twin: what a letter carries, confirmation, failures."""

from __future__ import annotations

import zlib
from typing import Any

import pytest
from kafka.errors import IllegalStateError, KafkaTimeoutError, MessageSizeTooLargeError

from workers.exceptions import RecoverableError
from workers.kafka.deadletter import DeadLetters, dead_letter_headers
from workers.testing import MemoryLog, MemoryProducer, MemoryRecord

DLQ = "alarms.dlq"
TS = 1_700_000_000_123


def record(
    offset: int = 42,
    value: bytes | None = b"not json",
    *,
    key: bytes | None = b"host-1",
    headers: list[tuple[str, bytes]] | None = None,
) -> MemoryRecord:
    return MemoryRecord("alarms", 3, offset, TS, key, value, headers or [])


def workers_headers(offset: int, reason: str) -> list[tuple[str, bytes]]:
    return [
        ("workers.reason", reason.encode()),
        ("workers.cluster", b"alert"),
        ("workers.topic", b"alarms"),
        ("workers.partition", b"3"),
        ("workers.offset", str(offset).encode()),
        ("workers.timestamp", str(TS).encode()),
    ]


class Factory:
    """Hands out one producer and counts how often it was asked for."""

    def __init__(self, producer: MemoryProducer) -> None:
        self.producer = producer
        self.calls = 0

    def __call__(self) -> MemoryProducer:
        self.calls += 1
        return self.producer


@pytest.fixture
def log() -> MemoryLog:
    return MemoryLog()


@pytest.fixture
def producer(log: MemoryLog) -> MemoryProducer:
    return MemoryProducer(log, max_request_size=1000)


@pytest.fixture
def factory(producer: MemoryProducer) -> Factory:
    return Factory(producer)


@pytest.fixture
def letters(factory: Factory) -> DeadLetters:
    return DeadLetters(factory, "alert", DLQ, timeout=1.0)


def delivered(log: MemoryLog) -> list[MemoryRecord]:
    if log.partitions(DLQ) is None:
        return []
    return list(log.partition(DLQ, 0).records)


# -- what a dead letter carries -----------------------------------------------------------------


def test_dead_letter_headers_name_reason_and_origin() -> None:
    headers = dead_letter_headers(record(), "alert", "value is a JSON array; expected an object")

    assert headers == workers_headers(42, "value is a JSON array; expected an object")


def test_letter_keeps_key_value_and_headers_and_adds_the_workers_headers(
    letters: DeadLetters, log: MemoryLog
) -> None:
    rec = record(value=b"[1]", headers=[("trace", b"abc")])

    letters.send(rec, "value is a JSON array; expected a JSON object")
    confirmed = letters.flush()

    [letter] = delivered(log)
    assert confirmed == 1
    assert (letter.key, letter.value) == (b"host-1", b"[1]")
    assert letter.headers == [
        ("trace", b"abc"),
        *workers_headers(42, "value is a JSON array; expected a JSON object"),
    ]


def test_send_logs_a_warning_naming_the_record(
    letters: DeadLetters, caplog: pytest.LogCaptureFixture
) -> None:
    letters.send(record(), "bad")

    assert "alarms[3]@42 is a dead letter: bad" in caplog.text


def test_keyed_tombstone_is_sent_with_its_key(letters: DeadLetters, log: MemoryLog) -> None:
    letters.send(record(value=None), "record has no value (a tombstone)")
    letters.flush()

    [letter] = delivered(log)
    assert (letter.key, letter.value) == (b"host-1", None)


# -- confirmation -------------------------------------------------------------------------------


def test_nothing_is_confirmed_before_flush(letters: DeadLetters, log: MemoryLog) -> None:
    letters.send(record(1), "bad")
    letters.send(record(2), "bad")

    assert (letters.pending, letters.sent) == (2, 0)
    assert delivered(log) == []


def test_flush_confirms_every_send_and_returns_the_count(
    letters: DeadLetters, log: MemoryLog
) -> None:
    for offset in (1, 2, 3):
        letters.send(record(offset), "bad")

    confirmed = letters.flush()
    again = letters.flush()

    assert (confirmed, again) == (3, 0)
    assert (letters.pending, letters.sent) == (0, 3)
    assert [r.value for r in delivered(log)] == [b"not json"] * 3
    assert [dict(r.headers)["workers.offset"] for r in delivered(log)] == [b"1", b"2", b"3"]


def test_producer_is_created_lazily(factory: Factory, letters: DeadLetters) -> None:
    nothing = letters.flush()
    before = factory.calls

    letters.send(record(), "bad")

    assert (nothing, before) == (0, 0)
    assert factory.calls == 1


# -- failures -----------------------------------------------------------------------------------


def test_failed_sends_raise_recoverable_naming_count_and_first_record(
    letters: DeadLetters, producer: MemoryProducer, log: MemoryLog
) -> None:
    producer.broken = KafkaTimeoutError("broker down")
    letters.send(record(42), "bad")
    letters.send(record(43), "bad")

    with pytest.raises(RecoverableError) as failure:
        letters.flush()

    assert str(failure.value) == (
        "2 dead letters to 'alarms.dlq' failed, first alarms[3]@42: "
        "KafkaTimeoutError('broker down')"
    )
    assert (letters.pending, letters.sent) == (0, 0)  # forgotten: the caller reads them again
    assert delivered(log) == []


def test_only_the_failed_letters_are_counted(
    letters: DeadLetters, producer: MemoryProducer, log: MemoryLog
) -> None:
    letters.send(record(42), "bad")
    producer.broken = KafkaTimeoutError("broker down")
    letters.send(record(43), "bad")

    with pytest.raises(RecoverableError, match=r"^1 dead letters .* first alarms\[3\]@43: "):
        letters.flush()

    assert (letters.pending, letters.sent) == (0, 0)  # nothing is confirmed when one failed
    assert [dict(r.headers)["workers.offset"] for r in delivered(log)] == [b"42"]


def test_a_later_flush_does_not_raise_the_old_failures_again(
    letters: DeadLetters, producer: MemoryProducer, log: MemoryLog
) -> None:
    producer.broken = KafkaTimeoutError("broker down")
    letters.send(record(42), "bad")
    with pytest.raises(RecoverableError):
        letters.flush()
    producer.broken = None

    nothing = letters.flush()

    assert (nothing, letters.pending, letters.sent) == (0, 0, 0)
    assert delivered(log) == []  # the failed letter is not resent: its record is read again


def test_letters_sent_again_once_the_producer_heals_are_confirmed(
    letters: DeadLetters, producer: MemoryProducer, log: MemoryLog
) -> None:
    producer.broken = KafkaTimeoutError("broker down")
    letters.send(record(42), "bad")
    letters.send(record(43), "bad")
    with pytest.raises(RecoverableError):
        letters.flush()
    producer.broken = None
    letters.send(record(42), "bad")  # what the caller does when it reads the records again
    letters.send(record(43), "bad")

    confirmed = letters.flush()

    assert (confirmed, letters.pending, letters.sent) == (2, 0, 2)
    assert [dict(r.headers)["workers.offset"] for r in delivered(log)] == [b"42", b"43"]


def test_flush_timeout_raises_recoverable_and_forgets_the_letters(
    letters: DeadLetters, producer: MemoryProducer, log: MemoryLog
) -> None:
    producer.flush_error = KafkaTimeoutError("Timeout after 1.0 secs")
    letters.send(record(), "bad")
    with pytest.raises(RecoverableError) as failure:
        letters.flush()
    producer.flush_error = None

    nothing = letters.flush()

    assert str(failure.value) == (
        "dead letters to 'alarms.dlq' not confirmed: KafkaTimeoutError('Timeout after 1.0 secs')"
    )
    assert isinstance(failure.value.__cause__, KafkaTimeoutError)
    assert (nothing, letters.pending, letters.sent) == (0, 0, 0)
    assert delivered(log) == []


def test_letter_unconfirmed_by_a_timed_out_flush_may_arrive_twice(
    letters: DeadLetters, producer: MemoryProducer, log: MemoryLog
) -> None:
    # At least once: the producer still holds the first send, and the record is read again.
    producer.flush_error = KafkaTimeoutError("Timeout after 1.0 secs")
    letters.send(record(), "bad")
    with pytest.raises(RecoverableError):
        letters.flush()
    producer.flush_error = None
    letters.send(record(), "bad")

    confirmed = letters.flush()

    assert (confirmed, letters.sent) == (1, 1)
    assert [dict(r.headers)["workers.offset"] for r in delivered(log)] == [b"42", b"42"]


# -- values too large for the dead-letter topic -------------------------------------------------


def test_value_too_large_is_resent_empty(letters: DeadLetters, log: MemoryLog) -> None:
    big = record(value=b"x" * 2000, headers=[("trace", b"abc")])
    letters.send(record(41), "bad")
    letters.send(big, "value is 2000 bytes; the limit is 1024")

    confirmed = letters.flush()

    small, dropped = delivered(log)
    assert confirmed == 2
    assert (letters.pending, letters.sent) == (0, 2)
    assert (small.value, dropped.value, dropped.key) == (b"not json", b"", b"host-1")
    assert dropped.headers == [
        ("trace", b"abc"),
        *workers_headers(42, "value is 2000 bytes; the limit is 1024"),
        ("workers.value_dropped", b"2000"),
    ]


def test_value_too_large_without_key_is_still_dead_lettered(
    letters: DeadLetters, log: MemoryLog
) -> None:
    letters.send(record(value=b"x" * 2000, key=None), "too big")

    confirmed = letters.flush()

    [letter] = delivered(log)
    assert (confirmed, letters.sent) == (1, 1)
    assert (letter.key, letter.value) == (None, b"")
    assert letter.headers == [*workers_headers(42, "too big"), ("workers.value_dropped", b"2000")]


def test_keyless_tombstone_is_dead_lettered_with_an_empty_value(
    letters: DeadLetters, log: MemoryLog
) -> None:
    letters.send(record(value=None, key=None), "record has no value (a tombstone)")

    confirmed = letters.flush()

    [letter] = delivered(log)
    assert (confirmed, letters.sent) == (1, 1)
    assert (letter.key, letter.value) == (None, b"")
    assert letter.headers == workers_headers(42, "record has no value (a tombstone)")


@pytest.mark.parametrize("key", [b"host-1", None])
def test_value_too_large_raised_by_send_is_resent_empty(
    letters: DeadLetters, producer: MemoryProducer, log: MemoryLog, key: bytes | None
) -> None:
    producer.too_large_raises = True
    letters.send(record(value=b"x" * 2000, key=key), "too big")

    confirmed = letters.flush()

    [letter] = delivered(log)
    assert (confirmed, letters.pending, letters.sent) == (1, 0, 1)
    assert (letter.key, letter.value) == (key, b"")
    assert letter.headers == [*workers_headers(42, "too big"), ("workers.value_dropped", b"2000")]


def test_letter_too_large_even_without_its_value_fails_the_flush(
    letters: DeadLetters, log: MemoryLog
) -> None:
    huge_key = record(value=b"x" * 2000, key=b"k" * 2000)
    letters.send(huge_key, "too big")

    with pytest.raises(RecoverableError, match=r"^1 dead letters .*MessageSizeTooLargeError"):
        letters.flush()

    assert (letters.pending, letters.sent) == (0, 0)
    assert delivered(log) == []


def test_letter_too_large_even_without_its_value_raised_by_send_is_recoverable(
    letters: DeadLetters, producer: MemoryProducer
) -> None:
    producer.too_large_raises = True

    with pytest.raises(RecoverableError):
        letters.send(record(value=b"x" * 2000, key=b"k" * 2000), "too big")

    assert letters.pending == 0


# -- errors raised by send itself ---------------------------------------------------------------


def test_kafka_error_raised_by_send_becomes_recoverable(
    letters: DeadLetters, producer: MemoryProducer, log: MemoryLog
) -> None:
    producer.send_error = KafkaTimeoutError("Failed to update metadata after 1.0 secs.")

    with pytest.raises(RecoverableError) as failure:
        letters.send(record(), "bad")

    assert str(failure.value) == (
        "dead letter to 'alarms.dlq' not sent: "
        "KafkaTimeoutError('Failed to update metadata after 1.0 secs.')"
    )
    assert isinstance(failure.value.__cause__, KafkaTimeoutError)
    assert letters.pending == 0


def test_closed_producer_refusing_a_send_becomes_recoverable(
    letters: DeadLetters, producer: MemoryProducer
) -> None:
    producer.close()

    with pytest.raises(RecoverableError) as failure:
        letters.send(record(), "bad")

    assert str(failure.value) == (
        "dead letter to 'alarms.dlq' not sent: IllegalStateError('KafkaProducer already closed!')"
    )
    assert isinstance(failure.value.__cause__, IllegalStateError)


# -- the producer twin --------------------------------------------------------------------------


def test_twin_auto_creates_an_unknown_topic_with_one_partition(
    producer: MemoryProducer, log: MemoryLog
) -> None:
    future = producer.send("fresh", b"v")

    metadata = future.get(timeout=1)

    assert log.partitions("fresh") == {0}
    assert (metadata.topic, metadata.partition, metadata.offset) == ("fresh", 0, 0)
    assert future.succeeded()


def test_twin_partitions_explicitly_by_key_or_round_robin(
    producer: MemoryProducer, log: MemoryLog
) -> None:
    log.create_topic("t", 3)
    keyed = [producer.send("t", b"v", key=k) for k in (b"a", b"b", b"host-1")]
    explicit = producer.send("t", b"v", key=b"a", partition=2)
    loose = [producer.send("t", b"v") for _ in range(4)]

    producer.flush()

    expected = [zlib.crc32(k) % 3 for k in (b"a", b"b", b"host-1")]
    assert [f.get().partition for f in keyed] == expected == [0, 2, 1]
    assert explicit.get().partition == 2
    assert [f.get().partition for f in loose] == [0, 1, 2, 0]


def test_twin_futures_complete_at_flush(producer: MemoryProducer, log: MemoryLog) -> None:
    future = producer.send(DLQ, b"v", key=b"k", headers=[("h", b"1")])
    before = (future.is_done, future.succeeded(), future.failed())

    producer.flush(timeout=1)

    assert before == (False, False, False)
    assert future.succeeded()
    assert delivered(log)[0].headers == [("h", b"1")]


def test_twin_knobs_fail_sends_and_flushes(producer: MemoryProducer) -> None:
    too_big = producer.send(DLQ, b"x" * 2000)
    producer.broken = KafkaTimeoutError("down")
    broken = producer.send(DLQ, b"v")
    producer.flush_error = KafkaTimeoutError("flush timed out")

    with pytest.raises(KafkaTimeoutError, match="flush timed out"):
        producer.flush()
    waiting = broken.is_done
    with pytest.raises(KafkaTimeoutError, match="down"):
        broken.get()

    assert too_big.failed()
    assert isinstance(too_big.exception, MessageSizeTooLargeError)
    assert waiting is False
    assert broken.failed()


def test_twin_send_error_is_raised_by_send_and_queues_nothing(
    producer: MemoryProducer, log: MemoryLog
) -> None:
    producer.send_error = KafkaTimeoutError("no metadata")

    with pytest.raises(KafkaTimeoutError, match="no metadata"):
        producer.send(DLQ, b"v")
    producer.flush()

    assert delivered(log) == []


def test_twin_too_large_raises_from_send_when_asked(producer: MemoryProducer) -> None:
    producer.too_large_raises = True

    with pytest.raises(MessageSizeTooLargeError):
        producer.send(DLQ, b"x" * 2000)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({}, ValueError),
        ({"value": b"v", "headers": ("h", b"1")}, TypeError),
        ({"value": b"v", "headers": [("h", "text")]}, TypeError),
        ({"value": b"v", "partition": 1}, ValueError),
    ],
)
def test_twin_refuses_what_kafka_python_refuses(
    producer: MemoryProducer, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        producer.send(DLQ, **kwargs)


def test_twin_refuses_sends_after_close(producer: MemoryProducer) -> None:
    producer.close()

    with pytest.raises(IllegalStateError):
        producer.send(DLQ, b"v")
