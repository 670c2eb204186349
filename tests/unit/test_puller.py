"""The pull cycle on the twins: delivery, limits, commits, failures, leases and resets."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError

from tests.unit.fakes import HookedOffsetStore, ManualClock, PagedConsumer, RecordingDispatcher
from workers.config import PipelineConfig, StartPolicy
from workers.consumer import Consumer
from workers.deadletter import DeadLetters
from workers.exceptions import RecoverableError
from workers.keys import Space
from workers.leases import Owner
from workers.memory import MemoryLeases, MemoryLedger, MemoryOffsetStore, MemoryState
from workers.memory_log import MemoryConsumer, MemoryLog
from workers.memory_producer import MemoryProducer
from workers.offsets import Mode, Position
from workers.puller import Puller, TopicMissing

TOPIC = "events"
DLQ = "events.dlq"
SPACE = Space("t", "common", "g1", TOPIC)

PIPELINE = PipelineConfig(
    name="alarms",
    cluster="common",
    topic=TOPIC,
    group="g1",
    tasks=("alarms.parse",),
    batch_size=3,
    start=StartPolicy("earliest"),
    max_records=1000,
    max_seconds=60.0,
    dead_letter_topic=DLQ,
    lease_ttl_seconds=30.0,
)


def pipeline(**changes: Any) -> PipelineConfig:
    return replace(PIPELINE, **changes)


@dataclass
class World:
    """One Redis (state), one Kafka (log, with a producer for dead letters), one clock."""

    clock: ManualClock
    state: MemoryState
    store: MemoryOffsetStore
    ledger: MemoryLedger
    log: MemoryLog
    producer: MemoryProducer

    def dispatcher(self, **options: Any) -> RecordingDispatcher:
        """A dispatcher whose pipeline finishes each batch at once (unless ``finish=False``)."""
        return RecordingDispatcher(ledger=self.ledger, **options)

    def puller(
        self,
        config: PipelineConfig = PIPELINE,
        *,
        dispatcher: RecordingDispatcher | None = None,
        consumer: Consumer | None = None,
        token: str = "owner-a",
        until_caught_up: bool = True,
        stopping: Callable[[], bool] = lambda: False,
        budget: float = 60.0,
    ) -> Puller:
        return Puller(
            config,
            space=SPACE,
            store=self.store,
            ledger=self.ledger,
            budget=budget,
            leases=MemoryLeases(self.state, Owner("h", 1), config.lease_ttl_seconds, token=token),
            consumer=consumer or MemoryConsumer(self.log),
            dispatcher=dispatcher or self.dispatcher(),
            dead_letters=DeadLetters(lambda: self.producer, "common", DLQ, timeout=1.0),
            clock=self.clock,
            stopping=stopping,
            until_caught_up=until_caught_up,
        )

    def fill(self, partition: int, count: int, *, size: int = 0) -> None:
        """Append ``count`` JSON records; ``size`` pads each value to that many bytes."""
        for _ in range(count):
            n = self.log.partition(TOPIC, partition).end
            value = json.dumps({"p": partition, "n": n}).encode()
            self.log.append(TOPIC, partition, value.ljust(size), key=f"k{partition}".encode())

    def stored(self) -> dict[int, int | None]:
        return {p: pos.offset for p, pos in self.store.stored(SPACE).items()}

    def dead_letters(self) -> list[tuple[bytes, bytes, bytes]]:
        """(partition, offset, reason) headers of each dead letter delivered."""
        if self.log.partitions(DLQ) is None:
            return []
        out = []
        for r in self.log.partition(DLQ, 0).records:
            h = dict(r.headers)
            out.append((h["workers.partition"], h["workers.offset"], h["workers.reason"]))
        return out


@pytest.fixture
def world() -> World:
    clock = ManualClock()
    state = MemoryState(clock=clock)
    log = MemoryLog()
    log.create_topic(TOPIC, 3)
    return World(
        clock, state, MemoryOffsetStore(state), MemoryLedger(state), log, MemoryProducer(log)
    )


def sizes(dispatcher: RecordingDispatcher) -> list[int]:
    return [len(batch) for batch in dispatcher.batches]


def offsets(dispatcher: RecordingDispatcher, partition: int) -> list[int]:
    return [o for p, o in dispatcher.delivered if p == partition]


# -- delivery -----------------------------------------------------------------------------------


def test_every_record_of_every_partition_is_delivered_once_in_order(world: World) -> None:
    for p, count in ((0, 4), (1, 3), (2, 5)):
        world.fill(p, count)
    dispatcher = world.dispatcher()
    puller = world.puller(pipeline(batch_size=5), dispatcher=dispatcher)

    summary = puller.cycle()

    assert sizes(dispatcher) == [5, 5, 2]
    assert [offsets(dispatcher, p) for p in (0, 1, 2)] == [[0, 1, 2, 3], [0, 1, 2], [0, 1, 2, 3, 4]]
    assert len(set(dispatcher.delivered)) == 12
    assert world.stored() == {0: 4, 1: 3, 2: 5}
    assert summary.as_dict() == {
        "pipeline": "alarms",
        "partitions": [0, 1, 2],
        "records": 12,
        "delivered": 12,
        "dead_lettered": 0,
        "batches": 3,
        "bytes": sum(
            len(r.value or b"") + len(r.key or b"")
            for p in (0, 1, 2)
            for r in world.log.partition(TOPIC, p).records
        ),
        "redriven": 0,
        "split": 0,
        "abandoned": 0,
        "reached": {"0": 4, "1": 3, "2": 5},
        "stopped_by": "caught_up",
        "seconds": 0.0,
    }


def test_messages_carry_the_record_and_its_id(world: World) -> None:
    world.fill(1, 1)
    dispatcher = world.dispatcher()

    world.puller(dispatcher=dispatcher).cycle()

    [message] = dispatcher.messages
    record = world.log.partition(TOPIC, 1).records[0]
    assert message == {
        "id": "common/events/1/0",
        "topic": TOPIC,
        "partition": 1,
        "offset": 0,
        "timestamp": record.timestamp,
        "key": "k1",
        "headers": [],
        "value": {"p": 1, "n": 0},
    }


def test_batch_max_bytes_closes_a_batch_before_batch_size(world: World) -> None:
    world.fill(0, 7, size=20)  # 22 bytes a record with its key
    dispatcher = world.dispatcher()
    puller = world.puller(pipeline(batch_size=100, batch_max_bytes=60), dispatcher=dispatcher)

    summary = puller.cycle()

    assert sizes(dispatcher) == [3, 3, 1]
    assert (summary.bytes, world.stored()[0]) == (154, 7)


def test_start_policy_latest_skips_what_was_there_before(world: World) -> None:
    world.fill(0, 3)
    dispatcher = world.dispatcher()
    puller = world.puller(pipeline(start=StartPolicy("latest")), dispatcher=dispatcher)

    first = puller.cycle()
    world.fill(0, 2)
    second = puller.cycle()

    assert (first.records, second.records) == (0, 2)
    assert dispatcher.delivered == [(0, 3), (0, 4)]
    assert world.stored() == {0: 5, 1: 0, 2: 0}


# -- limits -------------------------------------------------------------------------------------


def test_max_records_stops_and_the_next_cycle_continues_where_it_committed(world: World) -> None:
    world.fill(0, 10)
    dispatcher = world.dispatcher()
    puller = world.puller(pipeline(max_records=4), dispatcher=dispatcher)

    first = puller.cycle()
    stored_after_first = world.stored()[0]
    second = puller.cycle()
    third = puller.cycle()

    assert (first.stopped_by, first.records, first.reached) == ("max_records", 4, {0: 4})
    assert stored_after_first == 4
    assert (second.stopped_by, second.reached) == ("max_records", {0: 8})
    assert (third.stopped_by, third.records, third.reached) == ("caught_up", 2, {0: 10})
    assert sizes(dispatcher) == [3, 1, 3, 1, 2]
    assert offsets(dispatcher, 0) == list(range(10))


def test_max_bytes_stops_between_polls(world: World) -> None:
    world.fill(0, 10, size=20)  # 22 bytes a record with its key
    consumer = PagedConsumer(world.log, max_poll_records=2)
    dispatcher = world.dispatcher()
    puller = world.puller(pipeline(max_bytes=60), dispatcher=dispatcher, consumer=consumer)

    summary = puller.cycle()

    assert (summary.stopped_by, summary.records, summary.bytes) == ("max_bytes", 4, 88)
    assert sizes(dispatcher) == [3, 1]
    assert world.stored()[0] == 4


def test_max_seconds_stops_between_polls(world: World) -> None:
    world.fill(0, 20)
    consumer = PagedConsumer(world.log, max_poll_records=2, clock=world.clock, poll_seconds=1.0)
    dispatcher = world.dispatcher()
    puller = world.puller(pipeline(max_seconds=2.5), dispatcher=dispatcher, consumer=consumer)

    summary = puller.cycle()

    assert (summary.stopped_by, summary.records, summary.seconds) == ("max_seconds", 6, 3.0)
    assert sizes(dispatcher) == [3, 3]
    assert world.stored()[0] == 6


def test_reading_stops_before_the_leases_run_out(world: World) -> None:
    world.fill(0, 100)
    consumer = PagedConsumer(world.log, max_poll_records=1, clock=world.clock, poll_seconds=0.25)
    config = pipeline(lease_ttl_seconds=5.0, batch_size=100)
    puller = world.puller(config, consumer=consumer)

    summary = puller.cycle()

    # Leases last 5 s; reading stops 0.5 s (a tenth of the TTL) before, and still commits.
    assert (summary.stopped_by, summary.records, summary.seconds) == ("lease_deadline", 18, 4.5)
    assert world.stored()[0] == 18


def test_long_lived_mode_hands_off_a_partial_batch_when_a_poll_is_empty(world: World) -> None:
    world.fill(0, 3)
    late: list[int] = []

    def before_poll(n: int) -> None:
        if n == 3:  # records arrive after an empty poll
            world.fill(0, 2)
            late.append(len(dispatcher.batches))

    consumer = PagedConsumer(
        world.log, clock=world.clock, poll_seconds=1.0, before_poll=before_poll
    )
    dispatcher = world.dispatcher()
    puller = world.puller(
        pipeline(batch_size=10, max_seconds=3.0),
        dispatcher=dispatcher,
        consumer=consumer,
        until_caught_up=False,
    )

    summary = puller.cycle()

    assert late == [1]  # the partial batch was handed off at the empty poll
    assert sizes(dispatcher) == [3, 2]
    assert (summary.stopped_by, summary.records, summary.batches) == ("max_seconds", 5, 2)
    assert world.stored()[0] == 5


def test_stop_request_ends_the_cycle_after_committing(world: World) -> None:
    world.fill(0, 10)
    consumer = PagedConsumer(world.log, max_poll_records=4)
    dispatcher = world.dispatcher()
    puller = world.puller(
        dispatcher=dispatcher, consumer=consumer, stopping=lambda: consumer.polls >= 1
    )

    summary = puller.cycle()

    assert (summary.stopped_by, summary.records) == ("stop", 4)
    assert sizes(dispatcher) == [3, 1]
    assert world.stored()[0] == 4


# -- hand-off failures --------------------------------------------------------------------------


def test_failed_hand_off_keeps_its_batch_in_the_ledger_and_the_next_cycle_redrives_it(
    world: World,
) -> None:
    world.fill(0, 10)
    dispatcher = world.dispatcher(fail_on={3})
    puller = world.puller(dispatcher=dispatcher)

    with pytest.raises(RecoverableError, match="broker refused hand-off 3"):
        puller.cycle()
    stored_after_failure = world.stored()[0]
    retry = puller.cycle()

    assert stored_after_failure == 6
    # 0-5, then 6-8 again (re-driven at once, not at its due time), then 9.
    assert offsets(dispatcher, 0) == list(range(10))
    assert (retry.stopped_by, retry.redriven, retry.records, retry.reached) == (
        "caught_up",
        1,
        1,
        {0: 10},
    )
    assert world.stored()[0] == 10


def test_failed_hand_off_leaves_other_partitions_where_they_were_committed(world: World) -> None:
    world.fill(0, 2)
    world.fill(1, 2)
    world.fill(2, 2)
    dispatcher = world.dispatcher(fail_on={2})
    puller = world.puller(pipeline(batch_size=2), dispatcher=dispatcher)

    with pytest.raises(RecoverableError):
        puller.cycle()

    assert world.stored() == {0: 2, 1: 0, 2: 0}
    assert dispatcher.delivered == [(0, 0), (0, 1)]


# -- dead letters -------------------------------------------------------------------------------


def test_bad_records_go_to_the_dead_letter_topic_and_offsets_move_past_them(
    world: World,
) -> None:
    world.log.append(TOPIC, 0, b'{"ok": 1}')
    world.log.append(TOPIC, 0, b"[1]")
    world.log.append(TOPIC, 0, b'{"ok": 2}')
    world.log.append(TOPIC, 1, b"")  # partition 1 holds only bad records
    world.log.append(TOPIC, 1, None, key=b"gone")
    dispatcher = world.dispatcher()
    puller = world.puller(pipeline(batch_size=10), dispatcher=dispatcher)

    summary = puller.cycle()

    assert dispatcher.delivered == [(0, 0), (0, 2)]
    assert world.dead_letters() == [
        (b"0", b"1", b"value is a JSON array; expected a JSON object"),
        (b"1", b"0", b"value is empty; expected a JSON object"),
        (b"1", b"1", b"record has no value (a tombstone)"),
    ]
    assert world.stored() == {0: 3, 1: 2, 2: 0}
    assert (summary.records, summary.delivered, summary.dead_lettered) == (5, 2, 3)


def test_partition_of_only_bad_records_is_committed_without_a_hand_off(world: World) -> None:
    world.log.append(TOPIC, 2, b"not json")
    world.log.append(TOPIC, 2, b"42")
    dispatcher = world.dispatcher()
    puller = world.puller(dispatcher=dispatcher)

    summary = puller.cycle()

    assert dispatcher.attempts == 0
    assert (summary.batches, summary.dead_lettered, summary.reached) == (0, 2, {2: 2})
    assert world.stored() == {0: 0, 1: 0, 2: 2}
    assert [(p, o) for p, o, _ in world.dead_letters()] == [(b"2", b"0"), (b"2", b"1")]


def test_broken_dead_letter_producer_keeps_the_offset_before_the_bad_record(
    world: World,
) -> None:
    world.log.append(TOPIC, 0, b'{"ok": 1}')
    world.log.append(TOPIC, 0, b"[1]")
    world.log.append(TOPIC, 0, b'{"ok": 2}')
    world.producer.broken = KafkaTimeoutError("broker down")
    puller = world.puller(pipeline(batch_size=10))

    with pytest.raises(RecoverableError) as failure:
        puller.cycle()

    assert str(failure.value) == (
        "1 dead letters to 'events.dlq' failed, first events[0]@1: KafkaTimeoutError('broker down')"
    )
    assert world.stored() == {0: 0, 1: 0, 2: 0}
    assert world.dead_letters() == []


def test_next_cycle_dead_letters_the_record_once_the_producer_heals(world: World) -> None:
    world.log.append(TOPIC, 0, b'{"ok": 1}')
    world.log.append(TOPIC, 0, b"[1]")
    world.producer.broken = KafkaTimeoutError("broker down")
    dispatcher = world.dispatcher()
    puller = world.puller(pipeline(batch_size=10), dispatcher=dispatcher)
    with pytest.raises(RecoverableError):
        puller.cycle()
    stored_after_failure = world.stored()[0]
    world.producer.broken = None

    summary = puller.cycle()  # the failed letter is not resent: the record comes back instead

    assert stored_after_failure == 0
    assert dispatcher.delivered == [(0, 0)]  # nothing was handed off before the letter failed
    assert (summary.records, summary.dead_lettered, summary.reached) == (2, 1, {0: 2})
    assert world.dead_letters() == [(b"0", b"1", b"value is a JSON array; expected a JSON object")]
    assert puller.dead_letters.sent == 1


def test_value_too_large_for_the_dead_letter_topic_is_sent_empty(world: World) -> None:
    world.producer.max_request_size = 500
    world.log.append(TOPIC, 0, b"[" + b"1," * 400 + b"1]", key=b"k")
    puller = world.puller(pipeline(max_value_bytes=4096))

    summary = puller.cycle()

    [letter] = world.log.partition(DLQ, 0).records
    assert (letter.key, letter.value) == (b"k", b"")
    assert dict(letter.headers)["workers.value_dropped"] == b"803"
    assert (summary.dead_lettered, world.stored()[0]) == (1, 1)


# -- backpressure -------------------------------------------------------------------------------


def test_backlog_over_the_limit_stops_after_committing_what_was_handed_off(
    world: World,
) -> None:
    world.fill(0, 10)

    def fill_queue(n: int) -> None:
        if n == 2:
            dispatcher.waiting = 10_000

    dispatcher = world.dispatcher(on_hand_off=fill_queue)
    puller = world.puller(pipeline(batch_size=2, max_queue_length=100), dispatcher=dispatcher)

    summary = puller.cycle()

    assert (summary.stopped_by, summary.records, summary.batches) == ("backlog", 4, 2)
    assert world.stored()[0] == 4


def test_full_queue_stops_the_cycle_before_reading(world: World) -> None:
    world.fill(0, 10)
    dispatcher = world.dispatcher(waiting=101)
    puller = world.puller(pipeline(max_queue_length=100), dispatcher=dispatcher)

    summary = puller.cycle()

    assert (summary.stopped_by, summary.records, dispatcher.attempts) == ("backlog", 0, 0)
    assert world.stored()[0] == 0


@pytest.mark.parametrize("waiting", [None, 100])
def test_unknown_or_tolerable_backlog_does_not_stop(world: World, waiting: int | None) -> None:
    world.fill(0, 10)
    dispatcher = world.dispatcher(waiting=waiting)
    puller = world.puller(pipeline(max_queue_length=100), dispatcher=dispatcher)

    summary = puller.cycle()

    assert (summary.stopped_by, summary.records) == ("caught_up", 10)


# -- leases and resets mid-cycle ----------------------------------------------------------------


def steal(world: World, partition: int) -> None:
    """Another owner takes the partition after our lease expired."""
    world.state.leases[SPACE][partition].expires = world.clock()
    thief = MemoryLeases(world.state, Owner("other", 2), 30.0, token="thief")
    assert thief.acquire(SPACE, [partition]).partitions == [partition]


@pytest.mark.parametrize("how", ["stolen", "expired"])
def test_lost_lease_refuses_the_commit_and_ends_the_cycle(world: World, how: str) -> None:
    for p in (0, 1, 2):
        world.fill(p, 2)

    def lose(n: int) -> None:
        if n == 1 and how == "stolen":  # before partition 1's batch is recorded
            steal(world, 1)
        elif n == 1:
            world.clock.advance(30.0)

    dispatcher = world.dispatcher(on_hand_off=lose)
    puller = world.puller(pipeline(batch_size=2), dispatcher=dispatcher)

    summary = puller.cycle()

    assert (summary.stopped_by, summary.reached) == ("lease_lost", {0: 2})
    assert world.stored() == {0: 2, 1: 0, 2: 0}
    assert dispatcher.delivered == [(0, 0), (0, 1)]  # partition 1's records were not sent


def test_operator_reset_mid_cycle_wins_and_the_next_cycle_follows_it(world: World) -> None:
    for p in (0, 1, 2):
        world.fill(p, 2)

    def reset(n: int) -> None:
        if n == 1:  # before partition 1's batch is recorded
            world.store.reset(SPACE, {1: 1})

    dispatcher = world.dispatcher(on_hand_off=reset)
    puller = world.puller(pipeline(batch_size=2), dispatcher=dispatcher)

    first = puller.cycle()
    after_reset = world.store.read(SPACE, [1])[1]
    second = puller.cycle()

    assert (first.stopped_by, first.reached) == ("reset", {0: 2})
    assert after_reset == Position(1, 1)
    assert (second.stopped_by, second.reached) == ("caught_up", {1: 2, 2: 2})
    assert dispatcher.delivered == [(0, 0), (0, 1), (1, 1), (2, 0), (2, 1)]
    assert world.store.stored(SPACE) == {0: Position(2, 0), 1: Position(2, 1), 2: Position(2, 0)}


# -- out-of-range offsets -----------------------------------------------------------------------


def test_offset_removed_by_retention_is_repaired_and_counted(world: World) -> None:
    world.fill(0, 10)
    dispatcher = world.dispatcher()
    puller = world.puller(pipeline(max_records=3), dispatcher=dispatcher)
    puller.cycle()
    world.log.trim(TOPIC, 0, 6)

    summary = puller.cycle()

    assert world.store.skipped(SPACE) == {0: 3}
    assert offsets(dispatcher, 0) == [0, 1, 2, 6, 7, 8]
    assert (summary.stopped_by, summary.reached) == ("max_records", {0: 9})


def test_offset_out_of_range_during_a_cycle_is_repaired(world: World) -> None:
    world.fill(0, 10)

    def retention(n: int) -> None:
        if n == 2:  # the head is removed past what was read
            world.fill(0, 10)
            world.log.trim(TOPIC, 0, 15)

    consumer = PagedConsumer(world.log, before_poll=retention)
    dispatcher = world.dispatcher()
    puller = world.puller(pipeline(batch_size=5), dispatcher=dispatcher, consumer=consumer)

    summary = puller.cycle()

    assert offsets(dispatcher, 0) == [*range(10), *range(15, 20)]
    assert world.store.skipped(SPACE) == {0: 5}
    assert (summary.stopped_by, summary.records, summary.reached) == ("caught_up", 15, {0: 20})
    assert world.stored()[0] == 20


def test_summary_reports_an_offset_moved_by_repair_during_a_cycle(world: World) -> None:
    world.fill(0, 10)

    def retention(n: int) -> None:
        if n == 2:
            world.fill(0, 10)
            world.log.trim(TOPIC, 0, 15)

    consumer = PagedConsumer(world.log, before_poll=retention)
    dispatcher = world.dispatcher()
    puller = world.puller(
        pipeline(batch_size=5, out_of_range="latest"), dispatcher=dispatcher, consumer=consumer
    )

    summary = puller.cycle()

    assert offsets(dispatcher, 0) == list(range(10))  # "latest" skips 10-19
    assert world.store.skipped(SPACE) == {0: 10}
    assert (summary.stopped_by, summary.records, summary.reached) == ("caught_up", 10, {0: 20})
    assert world.stored()[0] == 20


def test_lease_lost_when_repairing_out_of_range_ends_the_cycle(world: World) -> None:
    world.fill(0, 10)

    def retention_and_takeover(n: int) -> None:
        if n == 2:
            world.fill(0, 10)
            world.log.trim(TOPIC, 0, 15)
            steal(world, 0)

    consumer = PagedConsumer(world.log, before_poll=retention_and_takeover)
    puller = world.puller(pipeline(batch_size=5), consumer=consumer)

    summary = puller.cycle()

    assert (summary.stopped_by, summary.reached) == ("lease_lost", {0: 10})
    assert world.stored()[0] == 10
    assert world.store.skipped(SPACE) == {}


def test_operator_reset_refusing_an_out_of_range_repair_ends_the_cycle(world: World) -> None:
    world.fill(0, 10)

    def retention(n: int) -> None:
        if n == 2:
            world.fill(0, 10)
            world.log.trim(TOPIC, 0, 15)

    def reset_first(mode: Mode) -> None:
        if mode == "repair":
            world.store.reset(SPACE, {0: 17})

    world.store = HookedOffsetStore(world.state, before_commit=reset_first)
    consumer = PagedConsumer(world.log, before_poll=retention)
    puller = world.puller(pipeline(batch_size=5), consumer=consumer)

    summary = puller.cycle()

    assert (summary.stopped_by, summary.reached) == ("reset", {0: 10})
    assert world.store.read(SPACE, [0])[0] == Position(17, 1)
    assert world.store.skipped(SPACE) == {}


def test_offset_past_the_end_is_moved_back_by_policy(world: World) -> None:
    world.fill(0, 4)
    world.store.reset(SPACE, {0: 50})
    dispatcher = world.dispatcher()
    puller = world.puller(dispatcher=dispatcher)

    summary = puller.cycle()

    assert offsets(dispatcher, 0) == [0, 1, 2, 3]
    assert world.store.read(SPACE, [0])[0] == Position(4, 1)
    assert world.store.skipped(SPACE) == {}
    assert (summary.stopped_by, summary.reached) == ("caught_up", {0: 4})


@pytest.mark.parametrize(
    ("lose", "stopped_by"),
    [("stolen", "lease_lost"), ("expired", "lease_lost"), ("reset", "reset")],
)
def test_repair_refused_at_the_start_of_a_cycle_ends_it_before_reading(
    world: World, lose: str, stopped_by: str
) -> None:
    world.fill(0, 10)
    dispatcher = world.dispatcher()
    world.puller(pipeline(max_records=3), dispatcher=dispatcher).cycle()
    world.log.trim(TOPIC, 0, 6)

    def refuse(mode: Mode) -> None:
        if mode != "repair":
            return
        if lose == "stolen":
            steal(world, 0)
        elif lose == "expired":
            world.state.leases[SPACE][0].expires = world.clock()
        else:
            world.store.reset(SPACE, {0: 8})

    world.store = HookedOffsetStore(world.state, before_commit=refuse)
    summary = world.puller(dispatcher=dispatcher).cycle()

    assert (summary.stopped_by, summary.partitions, summary.reached) == (stopped_by, [], {})
    assert (summary.records, dispatcher.attempts) == (0, 1)  # only the first cycle's hand-off
    assert world.stored()[0] == (8 if lose == "reset" else 3)
    assert world.store.skipped(SPACE) == {}


def test_summary_reports_an_offset_moved_by_repair_at_the_start_of_a_cycle(world: World) -> None:
    world.fill(0, 10)
    puller = world.puller(pipeline(max_records=3))
    puller.cycle()
    world.log.trim(TOPIC, 0, 10)  # everything unread is gone: nothing left to read

    summary = puller.cycle()

    assert (world.stored()[0], world.store.skipped(SPACE)) == (10, {0: 7})
    assert (summary.stopped_by, summary.records, summary.reached) == ("caught_up", 0, {0: 10})


# -- topics and owners --------------------------------------------------------------------------


@pytest.mark.parametrize("topic", ["missing", "empty"])
def test_topic_without_partitions_raises_topic_missing(world: World, topic: str) -> None:
    world.log.create_topic("empty", 0)
    puller = world.puller(pipeline(topic=topic))

    with pytest.raises(TopicMissing) as missing:
        puller.cycle()

    assert str(missing.value) == (
        f"pipeline 'alarms': topic {topic!r} does not exist on cluster 'common'"
    )


def test_two_owners_split_the_partitions_and_never_deliver_a_record_twice(
    world: World,
) -> None:
    a_out, b_out = world.dispatcher(), world.dispatcher()
    a = world.puller(dispatcher=a_out, token="owner-a")
    b = world.puller(dispatcher=b_out, token="owner-b")
    cycles: list[tuple[str, list[int], str]] = []
    for _ in range(3):
        for p in (0, 1, 2):
            world.fill(p, 4)
        for name, puller in (("a", a), ("b", b)):
            summary = puller.cycle()
            cycles.append((name, summary.partitions, summary.stopped_by))

    everything = a_out.delivered + b_out.delivered
    assert cycles == [
        ("a", [0, 1, 2], "caught_up"),
        ("b", [], "no_partitions"),  # a took all before b joined
        ("a", [0, 1], "caught_up"),  # a's fair share is now 2 of 3
        ("b", [2], "caught_up"),
        ("a", [0, 1], "caught_up"),
        ("b", [2], "caught_up"),
    ]
    assert len(everything) == len(set(everything)) == 36
    assert offsets(b_out, 2) == list(range(4, 12))  # b continued where a committed
    assert world.stored() == {0: 12, 1: 12, 2: 12}


def test_release_frees_the_leases_for_another_owner(world: World) -> None:
    world.fill(0, 2)
    a = world.puller(token="owner-a")
    a.cycle()
    held = sorted(lease.partition for lease in a.held)

    a.release()
    b_summary = world.puller(token="owner-b").cycle()

    assert held == [0, 1, 2]
    assert a.held == []
    assert b_summary.partitions == [0, 1, 2]


def test_max_partitions_bounds_the_leases_of_one_cycle(world: World) -> None:
    for p in (0, 1, 2):
        world.fill(p, 1)
    dispatcher = world.dispatcher()

    summary = world.puller(pipeline(max_partitions=1), dispatcher=dispatcher).cycle()

    assert summary.partitions == [0]
    assert dispatcher.delivered == [(0, 0)]
