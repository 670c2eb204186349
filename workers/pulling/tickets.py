"""The ticket a batch carries through its chain, so that its stages can find it in the ledger.

The puller puts one ticket into the Celery message headers of every stage of the chain (header
``workers_ticket``), each with that stage's position: the first stage counts a start, the last
one finishes the batch. Headers come from the broker, so reading one never trusts its shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workers.state.keys import Space
from workers.state.ledger import Slice

HEADER = "workers_ticket"


@dataclass(frozen=True, slots=True)
class Ticket:
    """A batch's identity in the ledger: its pipeline and key space, its slices (one per
    partition), the time its stages have from the first start (``budget_ms``) and how many
    starts it may take before its owner splits it (``max_starts``)."""

    pipeline: str
    space: Space
    slices: tuple[Slice, ...]
    budget_ms: int
    max_starts: int

    def header(self, stage: int, stages: int) -> dict[str, Any]:
        """The message header for stage ``stage`` (0-based) of a chain of ``stages``."""
        s = self.space
        return {
            HEADER: {
                "v": 1,
                "pipeline": self.pipeline,
                "space": [s.prefix, s.cluster, s.group, s.topic],
                "slices": [[x.partition, x.batch, x.start, x.end] for x in self.slices],
                "budget_ms": self.budget_ms,
                "max_starts": self.max_starts,
                "stage": [stage, stages],
            }
        }

    @property
    def records(self) -> int:
        return sum(s.end - s.start for s in self.slices)

    def __str__(self) -> str:
        parts = ", ".join(f"{s.partition}@{s.start}..{s.end - 1}" for s in self.slices)
        return f"{self.space} [{parts}]"


@dataclass(frozen=True, slots=True)
class Position:
    """Where a stage stands in its chain."""

    ticket: Ticket
    stage: int
    stages: int

    @property
    def first(self) -> bool:
        return self.stage == 0

    @property
    def last(self) -> bool:
        return self.stage == self.stages - 1


def read(header: Any) -> Position | None:
    """The ticket in a message header, or None when there is none or it is malformed."""
    if not isinstance(header, dict) or header.get("v") != 1:
        return None
    try:
        space = Space(*(_text(x) for x in header["space"]))
        slices = tuple(
            Slice(_int(p), _text(batch), _int(start), _int(end))
            for p, batch, start, end in header["slices"]
        )
        stage, stages = (_int(x) for x in header["stage"])
        ticket = Ticket(
            _text(header["pipeline"]),
            space,
            slices,
            _int(header["budget_ms"]),
            _int(header["max_starts"]),
        )
    except (KeyError, TypeError, ValueError):
        return None
    if not 0 <= stage < stages or not slices:
        return None
    return Position(ticket, stage, stages)


def _int(value: Any) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _text(value: Any) -> str:
    if type(value) is not str:
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value
