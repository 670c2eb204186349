"""Fused execution (``workers.stages.fused``), run as a worker runs it (a request pushed with
the batch's ticket): the stages in order in one task, each stage's retries and isolation of
its own, the ledger's start and finish, and the dead-letter brake, on the in-memory twins."""

from __future__ import annotations

from typing import Any

import pytest
from celery import Celery
from celery.exceptions import Ignore, NotRegistered, Retry

from tests.unit.test_stage import SLICE, SPACE, TICKET, app, brake, items, ledger, letters
from workers.exceptions import RecoverableError
from workers.stages.base import Stage
from workers.stages.fused import Fused
from workers.state.brake import Limits, MemoryBrake
from workers.testing import MemoryLedger

__all__ = ["app", "brake", "ledger", "letters"]  # fixtures shared with test_stage


class Calls:
    """What the test stages saw: (stage, item numbers) per run of a body."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, list[int]]] = []

    def of(self, stage: str) -> list[list[int]]:
        return [seen for name, seen in self.runs if name == stage]


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def fused(app: Celery, calls: Calls) -> Any:
    """The fused task and three stages on ``app``: ``t.mark`` marks items, ``t.fragile``
    fails on items marked bad, ``t.flaky`` raises ``RecoverableError`` while ``flaky.down``."""

    @app.task(base=Stage, name="t.mark", bind=True, shared=False)
    def mark(self: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        calls.runs.append(("t.mark", [x["n"] for x in batch]))
        return [{**x, "marked": True} for x in batch]

    @app.task(base=Stage, name="t.fragile", bind=True, shared=False)
    def fragile(self: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        calls.runs.append(("t.fragile", [x["n"] for x in batch]))
        if any(x["bad"] for x in batch):
            raise ValueError("bad item")
        return [{**x, "fragile": True} for x in batch]

    @app.task(base=Stage, name="t.flaky", bind=True, shared=False)
    def flaky(self: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        calls.runs.append(("t.flaky", [x["n"] for x in batch]))
        if flaky.down:
            raise RecoverableError("the service went away")
        return batch

    flaky.down = False

    @app.task(base=Stage, name="t.self_retry", bind=True, shared=False)
    def self_retry(self: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raise self.retry(exc=ValueError("asked for a retry"))

    @app.task(base=Fused, name="t.fused", bind=True, shared=False)
    def runner(self: Any, batch: Any, stages: list[str], at: int = 0, tries: int = 0) -> Any:
        raise AssertionError("Fused.__call__ runs the stages")

    return runner


def run(task: Any, batch: Any, stages: list[str], at: int = 0, tries: int = 0) -> Any:
    """Call the fused task as a worker does: its request carries the ticket of a chain of
    one, and ``retries`` counts every earlier try of this task."""
    retries = tries if at == 0 else tries + at  # any retry of the task counts
    kwargs = {"stages": stages, "at": at, "tries": tries}
    task.push_request(
        args=(batch,), kwargs=kwargs, called_directly=False, retries=retries, id="r1",
        **TICKET.header(0, 1),
    )  # fmt: skip
    try:
        return task(batch, **kwargs)
    finally:
        task.pop_request()


def book(ledger: MemoryLedger) -> Any:
    return ledger.snapshot(SPACE, [0]).partitions[0]


def test_the_stages_run_in_order_in_one_task_and_the_batch_finishes(
    fused: Any, calls: Calls, ledger: MemoryLedger
) -> None:
    out = run(fused, items(), ["t.mark", "t.fragile"])

    assert calls.runs == [("t.mark", [0, 1, 2, 3]), ("t.fragile", [0, 1, 2, 3])]
    assert all(x["marked"] and x["fragile"] for x in out)
    assert (book(ledger).in_flight, book(ledger).committed) == ((), 4)


def test_a_recoverable_error_retries_only_the_stage_that_raised_it_with_its_input(
    fused: Any, calls: Calls, ledger: MemoryLedger, app: Celery
) -> None:
    app.tasks["t.flaky"].down = True

    with pytest.raises(Retry) as retry:
        run(fused, items(), ["t.mark", "t.flaky", "t.fragile"])
    sent = retry.value.sig
    assert sent.kwargs == {"stages": ["t.mark", "t.flaky", "t.fragile"], "at": 1, "tries": 1}
    assert all(x["marked"] for x in sent.args[0])  # the output of t.mark: not run again
    assert book(ledger).in_flight[0].starts == 1 and book(ledger).committed == 0

    app.tasks["t.flaky"].down = False
    out = run(fused, sent.args[0], **sent.kwargs)

    assert [name for name, _ in calls.runs] == ["t.mark", "t.flaky", "t.flaky", "t.fragile"]
    assert len(out) == 4
    assert (book(ledger).in_flight, book(ledger).committed) == ((), 4)


def test_a_stage_that_used_up_its_retries_fails_the_task_and_the_batch_stays_unfinished(
    fused: Any, ledger: MemoryLedger, app: Celery
) -> None:
    flaky = app.tasks["t.flaky"]
    flaky.down = True

    with pytest.raises(RecoverableError):
        run(fused, items(), ["t.mark", "t.flaky"], at=1, tries=flaky.max_retries)

    assert book(ledger).committed == 0 and len(book(ledger).in_flight) == 1  # re-driven later


def test_each_stage_isolates_its_own_failures_and_names_itself_in_the_dead_letters(
    fused: Any, calls: Calls, ledger: MemoryLedger, letters: list[tuple[Any, str]]
) -> None:
    stages = ["t.mark", "t.fragile", "t.flaky"]
    with pytest.raises(Retry) as first:  # retried before it is bisected
        run(fused, items(2), stages)
    assert first.value.sig.kwargs["at"] == 1

    out = run(fused, items(2), stages, at=1, tries=Stage.failure_retries)

    assert [x["n"] for x in out] == [0, 1, 3]
    assert [(x["n"], reason) for x, reason in letters] == [
        (2, "stage t.fragile failed: ValueError: bad item")
    ]
    assert calls.of("t.flaky") == [[0, 1, 3]]  # the neighbours went on to the next stage
    assert (book(ledger).in_flight, book(ledger).committed) == ((), 4)


def test_a_stage_whose_dead_letters_trip_the_brake_holds_the_batch_unfinished(
    fused: Any, calls: Calls, ledger: MemoryLedger, brake: MemoryBrake, letters: Any
) -> None:
    brake.limits = Limits(window=100, max_ratio=None, max_consecutive=2)  # type: ignore[attr-defined]

    with pytest.raises(Ignore):
        run(fused, items(0, 1, 2), ["t.mark", "t.fragile", "t.flaky"], at=1, tries=2)
    held = ledger.snapshot(SPACE, [0])

    assert letters == [] and calls.of("t.flaky") == []
    trip = brake.state(SPACE)
    assert trip is not None and trip.source == "t.fragile"
    assert held.partitions[0].committed == 0
    assert held.partitions[0].in_flight[0].due_ms <= held.now_ms  # handed off after a resume


def test_a_batch_finished_already_runs_no_stage(
    fused: Any, calls: Calls, ledger: MemoryLedger
) -> None:
    ledger.finish(SPACE, [SLICE])

    with pytest.raises(Ignore):
        run(fused, items(), ["t.mark", "t.fragile"])

    assert calls.runs == []


def test_a_retry_asked_for_by_a_stage_body_is_its_error_not_a_message_of_its_own(
    fused: Any, letters: list[tuple[Any, str]]
) -> None:
    with pytest.raises(Retry) as retry:  # the fused task's retry, from the isolation
        run(fused, items(), ["t.mark", "t.self_retry"])

    assert retry.value.sig.name == "t.fused"
    assert retry.value.sig.kwargs["at"] == 1


def test_an_unknown_stage_fails_the_task_naming_it(fused: Any, calls: Calls) -> None:
    with pytest.raises(NotRegistered, match="t.missing"):
        run(fused, items(), ["t.mark", "t.missing"])

    assert calls.runs == []  # checked before any stage runs
