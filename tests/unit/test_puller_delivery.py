"""The pull cycle on the twins: every record delivered once and in order, in batches, and
where a cycle stops (record, byte and time limits, the leases' deadline, a stop request, a
backlog), committing what it handed off."""

from __future__ import annotations

import pytest

from tests.unit.fakes import PagedConsumer
from tests.unit.pulling_world import TOPIC, World, offsets, pipeline, sizes
from workers.config import StartPolicy

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
