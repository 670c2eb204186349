"""The librdkafka consumer adapter (``workers.kafka.rdkafka``) on a twin of librdkafka's handle
(``tests.unit.fake_confluent``): the consumer contract, and what only it does — its settings,
errors as kafka-python's, positions it keeps, one wait per poll, forked children."""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from kafka import TopicPartition
from kafka import errors as kafka_errors

pytest.importorskip("confluent_kafka", reason="confluent-kafka (the [confluent] extra) is absent")

from confluent_kafka import KafkaError, KafkaException  # noqa: E402

from tests.contracts.consumer import (  # noqa: E402
    Append,
    Clock,
    ConsumerContract,
    MakeConsumer,
    MakeTopic,
    Pause,
)
from tests.unit.fake_confluent import FakeRdKafkaConsumer  # noqa: E402
from tests.unit.fakes import ManualClock  # noqa: E402
from workers.kafka.rdkafka import RdKafkaConsumer  # noqa: E402
from workers.kafka.rdkafka.base import Problems, handle_config, translate  # noqa: E402
from workers.kafka.rdkafka.properties import GROUP_ID  # noqa: E402
from workers.runtime.logmask import guard_kafka_logs  # noqa: E402
from workers.testing import MemoryConsumer, MemoryLog  # noqa: E402

OPTIONS = {
    "bootstrap_servers": ["k1:9092", "k2:9092"],
    "enable_auto_commit": False,
    "group_id": None,
    "auto_offset_reset": "none",
    "fetch_max_bytes": 2 * 1024 * 1024,
}


class Built:
    """An adapter with its twin handle and the kafka-python clients it asked for."""

    def __init__(self, log: MemoryLog, **options: Any) -> None:
        self.handles: list[FakeRdKafkaConsumer] = []
        self.queries: list[dict[str, Any]] = []

        def handle(conf: dict[str, Any]) -> FakeRdKafkaConsumer:
            self.handles.append(FakeRdKafkaConsumer(log, conf))
            return self.handles[-1]

        def queries(**kw: Any) -> MemoryConsumer:
            self.queries.append(kw)
            return MemoryConsumer(log)

        self.consumer = RdKafkaConsumer({**OPTIONS, **options}, handle=handle, queries=queries)

    @property
    def handle(self) -> FakeRdKafkaConsumer:
        return self.handles[0]


class TestAdapterOnTheTwin(ConsumerContract):
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
        return lambda: Built(log).consumer


@pytest.fixture
def log() -> MemoryLog:
    log = MemoryLog()
    log.create_topic("t", 2)
    return log


def fill(log: MemoryLog, partition: int, count: int) -> None:
    for _ in range(count):
        log.append("t", partition, b"v%d" % log.partition("t", partition).end)


A, B = TopicPartition("t", 0), TopicPartition("t", 1)


def reading(built: Built, *tps: TopicPartition, at: int = 0) -> RdKafkaConsumer:
    c = built.consumer
    c.assign(list(tps))
    for tp in tps:
        c.seek(tp, at)
    return c


def offsets(polled: Any) -> dict[TopicPartition, list[int]]:
    return {tp: [r.offset for r in records] for tp, records in polled.items()}


# -- settings ----------------------------------------------------------------------------------


def test_librdkafka_is_asked_for_errors_instead_of_resets_and_commits_nothing(
    log: MemoryLog,
) -> None:
    built = Built(log)

    conf = built.handle.conf

    assert conf["bootstrap.servers"] == "k1:9092,k2:9092"
    assert conf["group.id"] == GROUP_ID
    assert (conf["enable.auto.commit"], conf["enable.auto.offset.store"]) == (False, False)
    assert conf["auto.offset.reset"] == "error"
    assert conf["enable.partition.eof"] is False
    assert conf["fetch.max.bytes"] == 2 * 1024 * 1024
    assert conf["queued.max.messages.kbytes"] == 8 * 1024  # 4 fetches ahead, not 64 MiB
    assert conf["fetch.queue.backoff.ms"] == 20  # not 1 s of empty polls once it was full
    assert conf["fetch.wait.max.ms"] == 100  # a fetch after a seek waits no longer
    assert Built(log, fetch_max_wait_ms=500).handle.conf["fetch.wait.max.ms"] == 500
    assert isinstance(conf["logger"], logging.Logger) and callable(conf["error_cb"])
    assert not any("_" in name for name in conf if name not in ("logger", "error_cb"))


def test_a_refused_configuration_is_a_kafka_python_error() -> None:
    def refuse(conf: dict[str, Any]) -> Any:
        raise KafkaException(KafkaError(KafkaError._INVALID_ARG, "bad property"))

    with pytest.raises(kafka_errors.KafkaConfigurationError, match="bad property"):
        RdKafkaConsumer(OPTIONS, handle=refuse)


def test_queries_go_to_one_kafka_python_consumer_of_the_same_options(log: MemoryLog) -> None:
    fill(log, 0, 3)
    built = Built(log, client_id="me")
    c = built.consumer

    found = (c.partitions_for_topic("t"), c.beginning_offsets([A]), c.end_offsets([A, B]))

    assert found == ({0, 1}, {A: 0}, {A: 3, B: 0})
    assert built.queries == [{**OPTIONS, "client_id": "me"}]


# -- polls -------------------------------------------------------------------------------------


def test_a_poll_waits_once_for_the_first_record_then_takes_what_is_there(log: MemoryLog) -> None:
    fill(log, 0, 10)
    built = Built(log, max_poll_records=7)
    c = reading(built, A)

    polled = c.poll(timeout_ms=250)

    # The twin has fetched nothing at the first consume: one wait of 0.25 s, then the rest.
    assert built.handle.consumes == [(7, 0), (1, 0.25), (6, 0)]
    assert offsets(polled) == {A: list(range(7))}


def test_a_poll_without_timeout_never_waits(log: MemoryLog) -> None:
    built = Built(log)
    reading(built, A)

    assert built.consumer.poll() == {}
    assert built.handle.consumes == [(500, 0)]


def test_a_position_outside_the_log_raises_out_of_range_with_the_fetch_position(
    log: MemoryLog,
) -> None:
    fill(log, 0, 10)
    built = Built(log)
    c = reading(built, A, at=2)
    log.trim("t", 0, 6)

    with pytest.raises(kafka_errors.OffsetOutOfRangeError) as raised:
        c.poll(timeout_ms=100)
    c.seek(A, 6)
    after = c.poll(timeout_ms=100, max_records=2)

    assert raised.value.args[0] == {A: 2}
    assert offsets(after) == {A: [6, 7]}


def test_records_polled_with_an_error_are_returned_and_the_error_raised_next(
    log: MemoryLog,
) -> None:
    fill(log, 0, 3)
    fill(log, 1, 3)
    built = Built(log)
    c = reading(built, A, B)
    log.trim("t", 1, 3)  # B's position, 0, is gone; A's records come first

    first = c.poll(timeout_ms=100)
    with pytest.raises(kafka_errors.OffsetOutOfRangeError) as raised:
        c.poll(timeout_ms=100)

    assert offsets(first) == {A: [0, 1, 2]}
    assert raised.value.args[0] == {B: 0}


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, kafka_errors.TopicAuthorizationFailedError),
        (KafkaError.UNKNOWN_TOPIC_OR_PART, kafka_errors.UnknownTopicOrPartitionError),
        (KafkaError._TRANSPORT, kafka_errors.KafkaConnectionError),
        (KafkaError._FAIL, kafka_errors.KafkaError),
    ],
)
def test_other_errors_are_raised_as_kafka_python_errors_after_the_records(
    log: MemoryLog, code: int, expected: type[Exception]
) -> None:
    fill(log, 0, 2)
    built = Built(log)
    c = reading(built, A)
    built.handle.consume(0, 0)  # fetch
    built.handle.inject(code, "t", 0)

    first = c.poll(timeout_ms=100)
    with pytest.raises(expected) as raised:
        c.poll(timeout_ms=100)

    assert offsets(first) == {A: [0, 1]}
    assert f"injected {code}" in str(raised.value)
    assert c.poll(timeout_ms=100) == {}  # raised once


def test_an_error_alone_is_raised_by_its_own_poll(log: MemoryLog) -> None:
    built = Built(log)
    c = reading(built, A)
    built.handle.inject(KafkaError.TOPIC_AUTHORIZATION_FAILED, "t", 0)

    with pytest.raises(kafka_errors.TopicAuthorizationFailedError):
        c.poll(timeout_ms=100)


def test_partition_eof_is_no_error(log: MemoryLog) -> None:
    built = Built(log)
    c = reading(built, A)
    built.handle.inject(KafkaError._PARTITION_EOF, "t", 0)

    assert c.poll(timeout_ms=100) == {}


def test_a_fatal_error_librdkafka_reports_is_raised_by_the_next_call(
    log: MemoryLog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="workers.kafka.rdkafka")
    built = Built(log)
    c = reading(built, A)
    report = built.handle.conf["error_cb"]

    report(KafkaError(KafkaError._TRANSPORT, "broker down"))
    assert c.poll() == {}
    report(KafkaError(KafkaError._FENCED, "fenced", fatal=True))

    with pytest.raises(kafka_errors.KafkaError, match="fenced"):
        c.poll()
    assert "broker down" in caplog.text


def test_records_fetched_before_a_seek_or_unassign_are_never_returned(log: MemoryLog) -> None:
    fill(log, 0, 10)
    fill(log, 1, 10)
    built = Built(log)
    c = reading(built, A, B)
    handle = built.handle
    handle.consume(0, 0)  # both partitions fetched ahead
    stale = list(handle.queue)

    c.seek(A, 3)
    c.assign([A])
    # Messages queued before the seek and the unassign, handed out late, then A's from 3:
    handle.queue[:0] = stale
    handle.consume(0, 0)

    got = c.poll(timeout_ms=100, max_records=100)

    assert offsets(got) == {A: [3, 4, 5, 6]}  # FETCH_AHEAD after the seek
    assert c.position(A) == 7


def test_a_resumed_partition_is_fetched_from_its_position(log: MemoryLog) -> None:
    fill(log, 0, 10)
    built = Built(log)
    c = reading(built, A)
    c.poll(timeout_ms=100, max_records=3)

    c.pause(A)
    assert c.poll(timeout_ms=100) == {}
    c.resume(A)
    got = c.poll(timeout_ms=100, max_records=2)

    assert built.handle.seeks[-1] == (("t", 0), 3)
    assert offsets(got) == {A: [3, 4]}


def test_pausing_before_the_first_seek_holds_the_partition(log: MemoryLog) -> None:
    fill(log, 0, 3)
    built = Built(log)
    c = built.consumer
    c.assign([A])
    c.pause(A)
    c.seek(A, 0)

    assert built.handle.paused == {("t", 0)}  # librdkafka fetches nothing for it
    assert c.poll(timeout_ms=100) == {}
    c.resume(A)
    assert offsets(c.poll(timeout_ms=100)) == {A: [0, 1, 2]}


def test_a_seek_librdkafka_refuses_starts_the_partition_anew(log: MemoryLog) -> None:
    fill(log, 0, 10)
    built = Built(log)
    c = reading(built, A)
    built.handle.refuse_seek = True

    c.seek(A, 8)

    assert offsets(c.poll(timeout_ms=100)) == {A: [8, 9]}


def test_positions_need_an_assignment_and_a_seek(log: MemoryLog) -> None:
    c = Built(log).consumer
    c.assign([A])

    with pytest.raises(kafka_errors.NoOffsetForPartitionError):
        c.position(A)
    with pytest.raises(kafka_errors.IllegalStateError):
        c.seek(B, 0)
    with pytest.raises(kafka_errors.IllegalStateError):
        c.position(B)
    with pytest.raises(ValueError):
        c.seek(A, -2)  # librdkafka would read it as a logical offset (the beginning)
    c.pause(B)  # not assigned: ignored
    assert (c.assignment(), c.paused()) == ({A}, set())


# -- life --------------------------------------------------------------------------------------


def test_close_closes_both_clients(log: MemoryLog) -> None:
    built = Built(log)
    c = built.consumer
    queries = c._query()

    c.close()

    assert built.handle.closed and queries.closed


def test_in_a_forked_child_the_handle_is_never_touched_nor_freed(log: MemoryLog) -> None:
    built = Built(log)
    c = built.consumer
    before = sys.getrefcount(built.handle)

    c.abandon()  # what the fork hook does in the child
    c.close()
    after = sys.getrefcount(built.handle)

    assert not built.handle.closed
    assert after == before + 1  # one reference more, never given back: never freed
    with pytest.raises(kafka_errors.KafkaError, match="forked child"):
        c.poll()


def test_a_forked_child_abandons_the_handles_it_inherited(log: MemoryLog) -> None:
    built = Built(log)
    c = reading(built, A)

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child: the fork hook has run
        try:
            c.poll()
        except kafka_errors.KafkaError as exc:
            os._exit(0 if "forked child" in str(exc) else 2)
        os._exit(1)
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    assert c.poll() == {}  # the parent's adapter works on


def test_librdkafka_log_lines_are_masked_like_kafka_pythons(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard_kafka_logs({"s3cr3t-for-the-mask"})  # a secret the process's clients were built with
    lines = handle_config(Problems("consumer"))["logger"]

    # How confluent-kafka forwards one of librdkafka's lines:
    lines.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#consumer-1", "s3cr3t-for-the-mask")

    assert "s3cr3t-for-the-mask" not in caplog.text
    assert "FAIL [rdkafka#consumer-1] ***" in caplog.text


def test_translate_keeps_the_broker_code_and_librdkafka_message() -> None:
    broker = translate(KafkaException(KafkaError(KafkaError.OFFSET_OUT_OF_RANGE, "gone")))
    local = translate(KafkaError(KafkaError._MSG_TIMED_OUT, "late"))

    assert type(broker) is kafka_errors.OffsetOutOfRangeError
    assert "gone" in str(broker) and "OFFSET_OUT_OF_RANGE" in str(broker)
    assert type(local) is kafka_errors.KafkaTimeoutError
