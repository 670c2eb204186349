"""The dead-letter brake on the stages' side: what a stage run dead-letters is reported to its
pipeline's brake before it is sent, and a run that dead-letters nothing ends the stage's run
of dead letters. While the brake is tripped (or when these letters trip it) the letters are not
sent: ``dead_letter`` raises ``BrakeTripped`` and the stage holds its batch unfinished.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workers.exceptions import BrakeTripped, RecoverableError
from workers.state.brake import Brake, Limits, Tally, log_tripped

if TYPE_CHECKING:
    from workers.pulling.tickets import Ticket

logger = logging.getLogger(__name__)

# The brake of a pipeline and its limits, looked up when first needed; None: it has none.
Lookup = Callable[[], "tuple[Brake, Limits] | None"]
_UNSET: Any = object()


@dataclass(slots=True)
class _Run:
    """One run of a stage on a batch of its pipeline."""

    stage: str
    ticket: Ticket
    items: Sequence[Any]
    lookup: Lookup
    reported: bool = False
    found: Any = field(default=_UNSET)

    def brake(self) -> tuple[Brake, Limits] | None:
        if self.found is _UNSET:
            self.found = self.lookup()
        result: tuple[Brake, Limits] | None = self.found
        return result


_CURRENT: ContextVar[_Run | None] = ContextVar("workers_stage_run", default=None)


@contextmanager
def stage_run(stage: str, ticket: Ticket | None, items: Any, lookup: Lookup) -> Iterator[None]:
    """Around one run of ``stage`` on ``items`` (a batch with ``ticket``; ``lookup`` finds
    its pipeline's brake); afterwards, a run that dead-lettered nothing ends the stage's run
    of dead letters."""
    if ticket is None or not isinstance(items, list):
        yield
        return
    run = _Run(stage, ticket, items, lookup)
    token = _CURRENT.set(run)
    try:
        yield
    finally:
        _CURRENT.reset(token)
    if not run.reported and items:
        _passed(run)


def current_ticket() -> Ticket | None:
    """The ticket of the batch the stage running here works on, if any."""
    run = _CURRENT.get()
    return None if run is None else run.ticket


def current_stage() -> str | None:
    """The name of the stage running here on a batch of a pipeline, if any."""
    run = _CURRENT.get()
    return None if run is None else run.stage


def check(refused: Sequence[tuple[Any, str]]) -> None:
    """Report the items about to be dead-lettered by the stage running here; raises
    ``BrakeTripped`` when they must not be sent. Outside a pipeline's stage: nothing."""
    run = _CURRENT.get()
    found = None if run is None or not refused else run.brake()
    if run is None or found is None:
        return
    brake, limits = found
    if run.reported:  # a second call in one run: these items only
        tally = Tally.of([True] * len(refused))
    else:
        bad = {id(item) for item, _ in refused}
        verdicts = [id(item) in bad for item in run.items]
        # Items a stage made up (not among its input) count as dead at the end of the run.
        tally = Tally.of(verdicts + [True] * (len(bad) - sum(verdicts)))
    run.reported = True
    ticket = run.ticket
    verdict = brake.report(ticket.space, limits, run.stage, tally, 0)
    if verdict.trip is not None:
        log_tripped(ticket.pipeline, verdict.trip, limits)
    if verdict.tripped:
        raise BrakeTripped(ticket.pipeline, run.stage)


def _passed(run: _Run) -> None:
    found = run.brake()
    if found is None or found[1].max_consecutive is None:
        return
    try:
        found[0].passed(run.ticket.space, run.stage)
    except RecoverableError as exc:  # counts, not the batch: it goes on
        logger.warning("%s: cannot end its run of dead letters: %s", run.stage, exc)
