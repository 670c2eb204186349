"""The pull cycle and the in-flight ledger: offsets follow completion, bounded read-ahead,
re-drives of lost batches, splitting of batches that kill their worker."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.fakes import RecordingDispatcher
from tests.unit.pulling_world import SPACE, TOPIC, World, offsets, pipeline
from workers.exceptions import RecoverableError
from workers.pulling import puller as puller_module
from workers.state.ledger import Slice
from workers.state.offsets import Position

BUDGET = 60.0


def in_flight(w: World, partition: int = 0) -> list[tuple[int, int, int, int]]:
    """(start, end, hand-offs, starts) of each slice in flight, oldest first."""
    book = w.ledger.snapshot(SPACE, [partition]).partitions[partition]
    return [(e.start, e.end, e.handoffs, e.starts) for e in book.in_flight]


def start(w: World, dispatcher: RecordingDispatcher, n: int, times: int = 1) -> None:
    """The first stage of batch ``n`` begins ``times`` times (a worker dies running it)."""
    ticket = dispatcher.tickets[n]
    for _ in range(times):
        w.ledger.begin(SPACE, ticket.slices, int(BUDGET * 1000), ticket.max_starts)


# -- offsets follow completion ------------------------------------------------------------------


def test_the_offset_moves_only_when_the_pipeline_finished_the_batches(world: World) -> None:
    world.fill(0, 6)
    dispatcher = world.dispatcher(finish=False)

    summary = world.puller(dispatcher=dispatcher).cycle()
    before = world.stored()[0]
    dispatcher.finish_batch(1)
    after_second = world.stored()[0]
    dispatcher.finish_batch(0)

    assert (summary.reached, summary.batches) == ({0: 6}, 2)
    assert (before, after_second, world.stored()[0]) == (0, 0, 6)


def test_the_ticket_names_each_partitions_slice_of_the_batch(world: World) -> None:
    world.log.append(TOPIC, 0, b'{"a": 1}')
    world.log.append(TOPIC, 0, b"not json")
    world.log.append(TOPIC, 1, b'{"b": 1}')
    world.log.append(TOPIC, 2, b"[]")  # partition 2 holds only a dead letter
    dispatcher = world.dispatcher(finish=False)

    world.puller(pipeline(batch_size=10), dispatcher=dispatcher).cycle()

    [ticket] = dispatcher.tickets
    assert [(s.partition, s.start, s.end) for s in ticket.slices] == [(0, 0, 2), (1, 0, 1)]
    assert ticket.space == SPACE and ticket.budget_ms == BUDGET * 1000
    assert world.stored() == {0: 0, 1: 0, 2: 1}  # the dead letter alone commits at once


def test_a_partition_stops_reading_at_max_in_flight_and_the_others_go_on(world: World) -> None:
    world.fill(0, 10)
    world.fill(1, 2)
    dispatcher = world.dispatcher(finish=False)
    puller = world.puller(pipeline(batch_size=2, max_in_flight=2), dispatcher=dispatcher)

    first = puller.cycle()
    second = puller.cycle()
    dispatcher.finish_batch(0)
    third = puller.cycle()

    # The first poll brings 0-9 of partition 0, then 0-1 of partition 1.
    assert (first.records, first.batches, first.reached) == (6, 3, {0: 4, 1: 2})
    assert (second.stopped_by, second.records) == ("caught_up", 0)  # 1 and 2 are not full
    assert (third.records, third.reached) == (2, {0: 6})
    assert offsets(dispatcher, 0) == [0, 1, 2, 3, 4, 5]


def test_a_pull_that_cannot_read_anything_says_why(world: World) -> None:
    world.fill(0, 4)
    dispatcher = world.dispatcher(finish=False)
    puller = world.puller(pipeline(batch_size=2, max_in_flight=1), dispatcher=dispatcher)
    for p in (1, 2):  # the other partitions are full too
        world.fill(p, 2)
    puller.cycle()

    summary = puller.cycle()

    assert (summary.stopped_by, summary.records, summary.partitions) == ("in_flight", 0, [0, 1, 2])


# -- re-drives ----------------------------------------------------------------------------------


def test_a_lost_batch_is_handed_off_again_when_due_and_then_committed(world: World) -> None:
    world.fill(0, 4)
    dispatcher = world.dispatcher(finish=False)
    puller = world.puller(pipeline(batch_size=2), dispatcher=dispatcher)
    puller.cycle()
    dispatcher.finish_batch(1)  # the first batch was lost
    early = puller.cycle()
    world.clock.advance(BUDGET)

    late = puller.cycle()
    dispatcher.finish_batch(2)

    assert (early.redriven, late.redriven, late.records) == (0, 1, 0)
    assert dispatcher.delivered == [(0, 0), (0, 1), (0, 2), (0, 3), (0, 0), (0, 1)]
    assert dispatcher.tickets[2].slices == dispatcher.tickets[0].slices  # the same batch
    assert world.stored()[0] == 4


def test_each_redrive_waits_twice_as_long(world: World) -> None:
    world.fill(0, 2)
    dispatcher = world.dispatcher(finish=False)
    puller = world.puller(dispatcher=dispatcher)
    puller.cycle()
    handoffs = []
    for wait in (BUDGET, BUDGET * 2 - 1, 1, BUDGET * 4):
        world.clock.advance(wait)
        puller.cycle()
        handoffs.append(in_flight(world)[0][2])

    assert handoffs == [2, 2, 3, 4]


def test_a_batch_that_finished_meanwhile_is_not_handed_off_again(world: World) -> None:
    world.fill(0, 2)
    dispatcher = world.dispatcher(finish=False)
    puller = world.puller(dispatcher=dispatcher)
    puller.cycle()
    world.clock.advance(BUDGET)
    ticket = dispatcher.tickets[0]
    real_redrive = world.ledger.redrive

    def finished_first(*args: object, **kwargs: object) -> str:
        world.ledger.finish(SPACE, ticket.slices)  # its last stage returns just now
        return real_redrive(*args, **kwargs)  # type: ignore[arg-type]

    world.ledger.redrive = finished_first  # type: ignore[method-assign]
    summary = puller.cycle()

    assert (summary.redriven, dispatcher.attempts, world.stored()[0]) == (0, 1, 2)


def test_a_redrive_leaves_out_records_that_were_dead_lettered(world: World) -> None:
    world.log.append(TOPIC, 0, b'{"a": 1}')
    world.log.append(TOPIC, 0, b"[1]")
    world.log.append(TOPIC, 0, b'{"a": 2}')
    dispatcher = world.dispatcher(finish=False)
    puller = world.puller(pipeline(batch_size=10), dispatcher=dispatcher)
    puller.cycle()
    world.clock.advance(BUDGET)

    puller.cycle()

    assert offsets(dispatcher, 0) == [0, 2, 0, 2]
    assert len(world.dead_letters()) == 1


def test_a_batch_that_keeps_killing_its_worker_is_split_until_the_killer_is_alone(
    world: World,
) -> None:
    world.fill(0, 4)
    dispatcher = world.dispatcher(finish=False)
    puller = world.puller(pipeline(batch_size=4, max_attempts=2), dispatcher=dispatcher)
    puller.cycle()
    killer = 2  # the record at offset 2 makes its worker die; everything else finishes

    def crash_or_finish() -> None:
        for n, ticket in enumerate(dispatcher.tickets):
            [s] = ticket.slices
            if s.start <= killer < s.end:
                start(world, dispatcher, n, times=2)  # the worker died twice on it
            else:
                world.ledger.finish(SPACE, [s])

    for _ in range(4):
        crash_or_finish()
        world.clock.advance(BUDGET)
        puller.cycle()

    letters = world.dead_letters()
    assert [(p, o) for p, o, _ in letters] == [(b"0", b"2")]
    assert letters[0][2].startswith(b"stage crashed: batch ")
    assert [len(b) for b in dispatcher.batches] == [4, 2, 2, 1, 1]
    assert world.stored()[0] == 4  # its neighbours went on and the offset passed it


def test_a_batch_that_never_started_is_never_dead_lettered(world: World) -> None:
    world.fill(0, 1)
    dispatcher = world.dispatcher(finish=False)
    puller = world.puller(pipeline(max_attempts=1), dispatcher=dispatcher)
    puller.cycle()

    for _ in range(6):
        world.clock.advance(3600)
        puller.cycle()

    assert world.dead_letters() == []
    assert in_flight(world) == [(0, 1, 7, 0)]


def test_a_new_owner_reads_on_past_the_batches_in_flight_and_redrives_them_when_due(
    world: World,
) -> None:
    world.fill(0, 4)
    a_out, b_out = world.dispatcher(finish=False), world.dispatcher(finish=False)
    a = world.puller(pipeline(batch_size=2), dispatcher=a_out, token="a")
    a.cycle()
    a.release()  # as a Beat pull does; or its worker died and the leases expired
    world.fill(0, 2)
    b = world.puller(pipeline(batch_size=2), dispatcher=b_out, token="b")

    fresh = b.cycle()
    b_out.finish_batch(0)
    world.clock.advance(BUDGET)
    redriven = b.cycle()

    assert (fresh.records, fresh.redriven) == (2, 0)
    assert offsets(b_out, 0) == [4, 5, 0, 1, 2, 3]
    assert redriven.redriven == 2


def test_a_record_made_before_a_crash_is_redriven_by_the_next_owner(world: World) -> None:
    world.fill(0, 2)

    class Crash(Exception):
        pass

    crashing = world.dispatcher(finish=False)

    def die(_batch: object, _ticket: object) -> None:
        raise Crash  # the process dies between recording and handing off

    crashing.hand_off = die  # type: ignore[assignment,method-assign]
    with pytest.raises(Crash):
        world.puller(dispatcher=crashing, token="a").cycle()
    world.clock.advance(BUDGET)  # the leases expired, and so did the batch's due time
    dispatcher = world.dispatcher()

    summary = world.puller(dispatcher=dispatcher, token="b").cycle()

    assert (summary.redriven, dispatcher.delivered, world.stored()[0]) == (1, [(0, 0), (0, 1)], 2)


def test_an_operator_reset_drops_the_batches_in_flight(world: World) -> None:
    world.fill(0, 4)
    dispatcher = world.dispatcher(finish=False)
    puller = world.puller(pipeline(batch_size=2), dispatcher=dispatcher)
    puller.cycle()

    world.store.reset(SPACE, {0: 1})
    dispatcher.finish_all()  # late finishes change nothing
    after_reset = world.store.read(SPACE, [0])[0]
    world.clock.advance(BUDGET)
    summary = puller.cycle()

    assert after_reset == Position(1, 1)
    assert (summary.redriven, summary.reached) == (0, {0: 4})
    assert offsets(dispatcher, 0) == [0, 1, 2, 3, 1, 2, 3]


def test_a_failed_redrive_hand_off_is_retried_at_the_next_cycle(world: World) -> None:
    world.fill(0, 2)
    dispatcher = world.dispatcher(finish=False, fail_on={2})
    puller = world.puller(dispatcher=dispatcher)
    puller.cycle()
    world.clock.advance(BUDGET)

    with pytest.raises(RecoverableError):
        puller.cycle()
    summary = puller.cycle()

    assert (summary.redriven, dispatcher.attempts) == (1, 3)
    assert in_flight(world)[0][2] == 3  # hand-offs: the first, the failed one, this one


def test_a_redrive_refused_by_a_lost_lease_ends_the_cycle(world: World) -> None:
    world.fill(0, 2)
    dispatcher = world.dispatcher(finish=False)
    puller = world.puller(dispatcher=dispatcher)
    puller.cycle()
    world.clock.advance(BUDGET)
    real_redrive = world.ledger.redrive

    def after_a_reset(*args: object, **kwargs: object) -> str:
        world.store.reset(SPACE, {1: 0})  # another partition: this one is refused by hand
        return "reset"

    world.ledger.redrive = after_a_reset  # type: ignore[method-assign]
    summary = puller.cycle()
    world.ledger.redrive = real_redrive  # type: ignore[method-assign]

    assert (summary.stopped_by, summary.redriven, dispatcher.attempts) == ("reset", 0, 1)


def test_ranges_of_the_ledger_match_the_records_handed_off(world: World) -> None:
    for p, n in ((0, 7), (1, 3), (2, 5)):
        world.fill(p, n)
    dispatcher = world.dispatcher(finish=False)

    world.puller(pipeline(batch_size=4), dispatcher=dispatcher).cycle()

    for batch, ticket in zip(dispatcher.batches, dispatcher.tickets, strict=True):
        covered = {(s.partition, o) for s in ticket.slices for o in range(s.start, s.end)}
        assert {(m["partition"], m["offset"]) for m in batch} == covered
    flying = sum(len(in_flight(world, p)) for p in (0, 1, 2))
    assert flying == sum(len(t.slices) for t in dispatcher.tickets)
    assert world.ledger.finish(SPACE, [Slice(0, "nope", 0, 1)])[0].status == "unknown"


def test_a_message_that_cannot_be_encoded_is_dead_lettered_and_its_batch_goes_on(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world.fill(0, 3)
    real = puller_module.decode_or_reason

    def leaky(record: Any, *args: Any) -> Any:  # a decoder bug that lets a set through
        message = real(record, *args)
        if record.offset == 1 and isinstance(message, dict):
            message["value"] = {"tags": {"a", "b"}}
        return message

    monkeypatch.setattr(puller_module, "decode_or_reason", leaky)
    dispatcher = world.dispatcher()

    summary = world.puller(pipeline(batch_size=10), dispatcher=dispatcher).cycle()

    assert offsets(dispatcher, 0) == [0, 2]
    [(partition, offset, reason)] = world.dead_letters()
    assert (partition, offset) == (b"0", b"1")
    assert reason.startswith(b"cannot be encoded for the hand-off: TypeError: ")
    assert (summary.dead_lettered, world.stored()[0]) == (1, 3)
