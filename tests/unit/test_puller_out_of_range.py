"""The pull cycle and offsets out of range: repaired by policy and counted as skipped, at the
start of a cycle or during it, unless a lost lease or an operator reset refuses the repair."""

from __future__ import annotations

import pytest

from tests.unit.fakes import HookedOffsetStore, PagedConsumer
from tests.unit.pulling_world import SPACE, TOPIC, World, offsets, pipeline, steal
from workers.state.offsets import Mode, Position


def trimmed_at_the_second_poll(world: World, *, takeover: bool = False) -> PagedConsumer:
    """A consumer of 5 records a poll (so that a cycle begun with 10 records polls twice)
    before whose second poll 10 more records arrive on partition 0 and retention removes its
    head up to offset 15, past what was read; with ``takeover``, another owner then takes
    the partition."""

    def retention(n: int) -> None:
        if n == 2:
            world.fill(0, 10)
            world.log.trim(TOPIC, 0, 15)
            if takeover:
                steal(world, 0)

    return PagedConsumer(world.log, max_poll_records=5, before_poll=retention)


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

    consumer = trimmed_at_the_second_poll(world)
    dispatcher = world.dispatcher()
    puller = world.puller(pipeline(batch_size=5), dispatcher=dispatcher, consumer=consumer)

    summary = puller.cycle()

    assert offsets(dispatcher, 0) == [*range(5), *range(15, 20)]
    assert world.store.skipped(SPACE) == {0: 10}
    assert (summary.stopped_by, summary.records, summary.reached) == ("caught_up", 10, {0: 20})
    assert world.stored()[0] == 20


def test_summary_reports_an_offset_moved_by_repair_during_a_cycle(world: World) -> None:
    world.fill(0, 10)

    consumer = trimmed_at_the_second_poll(world)
    dispatcher = world.dispatcher()
    puller = world.puller(
        pipeline(batch_size=5, out_of_range="latest"), dispatcher=dispatcher, consumer=consumer
    )

    summary = puller.cycle()

    assert offsets(dispatcher, 0) == list(range(5))  # "latest" skips 5-19
    assert world.store.skipped(SPACE) == {0: 15}
    assert (summary.stopped_by, summary.records, summary.reached) == ("caught_up", 5, {0: 20})
    assert world.stored()[0] == 20


def test_lease_lost_when_repairing_out_of_range_ends_the_cycle(world: World) -> None:
    world.fill(0, 10)

    consumer = trimmed_at_the_second_poll(world, takeover=True)
    puller = world.puller(pipeline(batch_size=5), consumer=consumer)

    summary = puller.cycle()

    assert (summary.stopped_by, summary.reached) == ("lease_lost", {0: 5})
    assert world.stored()[0] == 5
    assert world.store.skipped(SPACE) == {}


def test_operator_reset_refusing_an_out_of_range_repair_ends_the_cycle(world: World) -> None:
    world.fill(0, 10)

    def reset_first(mode: Mode) -> None:
        if mode == "repair":
            world.store.reset(SPACE, {0: 17})

    world.store = HookedOffsetStore(world.state, before_commit=reset_first)
    consumer = trimmed_at_the_second_poll(world)
    puller = world.puller(pipeline(batch_size=5), consumer=consumer)

    summary = puller.cycle()

    assert (summary.stopped_by, summary.reached) == ("reset", {0: 5})
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
