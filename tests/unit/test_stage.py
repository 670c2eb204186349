"""The Stage base class, run as a worker runs it (a request pushed, the in-process memory
broker for retries): isolation by bisection, retries, the ledger's bookkeeping (the first
stage begins, the last one finishes) and the dead-letter brake, on the in-memory twins."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from celery.exceptions import Ignore, Retry

import workers.stages.base as stage_module
from tests.unit.fakes import ManualClock
from workers.exceptions import BrakeTripped, RecoverableError
from workers.pulling.tickets import Ticket
from workers.stages import braking
from workers.stages.base import Stage, failure_reason
from workers.state.brake import Limits, MemoryBrake
from workers.state.keys import Space
from workers.state.leases import Owner
from workers.state.ledger import Fence, Slice
from workers.state.offsets import Checkpoint
from workers.testing import MemoryLeases, MemoryLedger, MemoryOffsetStore, MemoryState

SPACE = Space("t", "common", "g", "events")
SLICE = Slice(0, "b1", 0, 4)
TICKET = Ticket("alarms", SPACE, (SLICE,), 60_000, 2)


@pytest.fixture
def ledger() -> MemoryLedger:
    """A ledger with batch b1 (offsets 0-3 of partition 0) in flight."""
    state = MemoryState(clock=ManualClock())
    leases = MemoryLeases(state, Owner("h", 1), 30.0)
    epoch = leases.acquire(SPACE, [0]).leases[0].epoch
    MemoryOffsetStore(state).commit(SPACE, leases.token, [Checkpoint(0, 0, epoch, 0)], "init")
    twin = MemoryLedger(state)
    twin.record(SPACE, leases.token, {0: Fence(epoch, 0)}, [SLICE], 60_000)
    return twin


@pytest.fixture
def letters(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, str]]:
    sent: list[tuple[Any, str]] = []

    def dead_letter(app: Any, refused: Any, **kwargs: Any) -> int:
        braking.check(refused)  # as the real one does, before sending
        sent.extend(refused)
        return len(refused)

    monkeypatch.setattr(stage_module, "dead_letter", dead_letter)
    return sent


@pytest.fixture
def brake() -> MemoryBrake:
    """The pipeline's dead-letter brake; off until a test sets ``brake.limits``."""
    twin = MemoryBrake()
    twin.limits = None  # type: ignore[attr-defined]
    return twin


@pytest.fixture
def app(
    ledger: MemoryLedger, brake: MemoryBrake, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Celery]:
    app = Celery("stage-test", set_as_current=False)
    app.conf.update(broker_url="memory://", task_default_queue="stage-test")
    monkeypatch.setattr(Stage, "_ledger", lambda self: ledger)

    def found(self: Any, ticket: Any) -> Any:
        limits = brake.limits  # type: ignore[attr-defined]
        return None if limits is None else (brake, limits)

    monkeypatch.setattr(Stage, "_brake", found)
    yield app
    app.close()


def items(*bad: int) -> list[dict[str, Any]]:
    return [{"record_id": f"common/events/0/{i}", "n": i, "bad": i in bad} for i in range(4)]


def fragile(app: Celery, calls: list[int] | None = None) -> Any:
    @app.task(base=Stage, name="t.fragile", bind=True, shared=False)
    def run(self: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if calls is not None:
            calls.append(len(batch))
        if any(x["bad"] for x in batch):
            raise ValueError("bad item\nsecond line")
        return [{**x, "seen": True} for x in batch]

    return run


def run(task: Any, batch: Any, stage: int | None = None, stages: int = 1, retries: int = 0) -> Any:
    """Call ``task`` as a worker does: a request with its retries and, for ``stage``, the
    batch's ticket header at that position of a chain of ``stages``."""
    ticket = {} if stage is None else TICKET.header(stage, stages)
    task.push_request(args=(batch,), called_directly=False, retries=retries, id="r1", **ticket)
    try:
        return task(batch)
    finally:
        task.pop_request()


def test_a_failing_batch_is_bisected_and_only_the_failing_items_are_dead_lettered(
    app: Celery, letters: list[tuple[Any, str]]
) -> None:
    calls: list[int] = []
    task = fragile(app, calls)

    out = run(task, items(1, 2), retries=2)  # past its failure retries

    assert [x["n"] for x in out] == [0, 3]  # the rest, in order
    assert [(x["n"], reason) for x, reason in letters] == [
        (1, "stage t.fragile failed: ValueError: bad item\\nsecond line"),
        (2, "stage t.fragile failed: ValueError: bad item\\nsecond line"),
    ]
    assert calls == [4, 2, 1, 1, 2, 1, 1]  # the batch, then halves down to single items


def test_a_failing_batch_is_retried_before_it_is_bisected(
    app: Celery, letters: list[tuple[Any, str]]
) -> None:
    task = fragile(app)

    with pytest.raises(Retry):
        run(task, items(1), retries=0)

    assert letters == []


def test_a_recoverable_error_retries_the_whole_batch_even_while_bisecting(
    app: Celery, letters: list[tuple[Any, str]]
) -> None:
    @app.task(base=Stage, name="t.flaky", bind=True, shared=False)
    def flaky(self: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if len(batch) == 4:
            raise ValueError("a bug")
        raise RecoverableError("the service went away")

    with pytest.raises(Retry):
        run(flaky, items(), retries=2)

    assert letters == []


def test_the_first_stage_counts_a_start_and_the_last_stage_finishes_the_batch(
    app: Celery, ledger: MemoryLedger
) -> None:
    task = fragile(app)

    run(task, items(), 0, 2)
    after_first = ledger.snapshot(SPACE, [0]).partitions[0]
    run(task, items(), 1, 2)
    after_last = ledger.snapshot(SPACE, [0]).partitions[0]

    assert [e.starts for e in after_first.in_flight] == [1]
    assert (after_last.in_flight, after_last.committed) == ((), 4)


def test_a_batch_already_finished_is_skipped_and_stops_its_chain(
    app: Celery, ledger: MemoryLedger
) -> None:
    calls: list[int] = []
    task = fragile(app, calls)
    ledger.finish(SPACE, [SLICE])

    with pytest.raises(Ignore):
        run(task, items(), 0, 3)

    assert calls == []


def test_a_batch_started_too_often_is_not_run_again(app: Celery, ledger: MemoryLedger) -> None:
    calls: list[int] = []
    task = fragile(app, calls)
    for _ in range(TICKET.max_starts):  # its worker died each time
        ledger.begin(SPACE, [SLICE], 60_000, TICKET.max_starts)

    with pytest.raises(Ignore):
        run(task, items(), 0, 3)
    book = ledger.snapshot(SPACE, [0])

    assert calls == []
    assert book.partitions[0].in_flight[0].due_ms <= book.now_ms  # its owner acts at once


def test_a_retried_first_stage_does_not_count_another_start(
    app: Celery, ledger: MemoryLedger
) -> None:
    task = fragile(app)

    run(task, items(), 0, 2, retries=1)

    assert [e.starts for e in ledger.snapshot(SPACE, [0]).partitions[0].in_flight] == [0]


def test_a_failure_to_finish_is_retried(
    app: Celery, ledger: MemoryLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*args: Any) -> Any:
        raise RecoverableError("redis down")

    monkeypatch.setattr(ledger, "finish", down)
    task = fragile(app)

    with pytest.raises(Retry):
        run(task, items(), 0, 1)


def test_a_reason_survives_an_exception_whose_str_fails() -> None:
    class Weird(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert failure_reason("s", Weird()) == "stage s failed: Weird: <unprintable>"
    assert len(failure_reason("s", ValueError("x" * 5000))) == 200


def test_a_run_whose_dead_letters_trip_the_brake_holds_its_batch_unfinished(
    app: Celery, ledger: MemoryLedger, brake: MemoryBrake, letters: list[tuple[Any, str]]
) -> None:
    brake.limits = Limits(window=100, max_ratio=None, max_consecutive=2)  # type: ignore[attr-defined]
    task = fragile(app)

    with pytest.raises(Ignore):  # and the rest of the chain with it
        run(task, items(0, 1, 2), 0, 2, retries=2)  # three fail alone: more than 2 in a row
    entry = ledger.snapshot(SPACE, [0])

    assert letters == []  # not dead-lettered
    trip = brake.state(SPACE)
    assert trip is not None and (trip.reason, trip.source) == ("consecutive", "t.fragile")
    held = entry.partitions[0].in_flight[0]
    assert (held.starts, held.due_ms <= entry.now_ms) == (0, True)  # its start taken back
    assert entry.partitions[0].committed == 0


def test_while_tripped_a_stage_holds_any_batch_with_a_dead_letter_and_finishes_the_others(
    app: Celery, ledger: MemoryLedger, brake: MemoryBrake, letters: list[tuple[Any, str]]
) -> None:
    brake.limits = Limits(window=100, max_ratio=None, max_consecutive=1)  # type: ignore[attr-defined]
    task = fragile(app)
    with pytest.raises(Ignore):
        run(task, items(0, 1), 0, 2, retries=2)

    with pytest.raises(Ignore):
        run(task, items(3), 0, 2, retries=2)  # one dead letter: within the limit, but tripped
    out = run(task, items(), 1, 2)  # none: it goes on and finishes

    assert letters == [] and len(out) == 4
    assert ledger.snapshot(SPACE, [0]).partitions[0].in_flight == ()


def test_a_run_without_dead_letters_ends_the_stage_s_run_of_them(
    app: Celery, brake: MemoryBrake, letters: list[tuple[Any, str]]
) -> None:
    brake.limits = Limits(window=100, max_ratio=None, max_consecutive=3)  # type: ignore[attr-defined]
    task = fragile(app)

    run(task, items(2, 3), 0, 2, retries=2)  # a run of 2 at the end
    run(task, items(), 1, 2)  # all pass: the run ends
    run(task, items(0, 1), 0, 2, retries=2)  # 2 in a row again, not 2 + 2

    assert len(letters) == 4 and brake.state(SPACE) is None


def test_outside_a_pipeline_the_brake_is_not_asked() -> None:
    braking.check([({"id": "c/t/0/1"}, "why")])  # no stage run here: nothing happens

    with pytest.raises(BrakeTripped):
        raise BrakeTripped("p", "pull")
