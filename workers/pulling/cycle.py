"""The state of one pull cycle: what it did (``Summary``, a task's result), where it stands
(``Run``: cursors, the ledger's reach, batches in flight, the batch in hand) and how it ends
early (``Stop``, whose argument says why)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workers.kafka.codecs import Message
from workers.state.brake import Tally
from workers.state.ledger import Fence


@dataclass(slots=True)
class Summary:
    """What one cycle did. ``reached`` maps each partition the cycle moved to the next offset
    past what it handed off or dead-lettered (or where a repair put it); the committed offset
    follows once the pipeline has finished those batches (see ``workers.state.ledger``)."""

    pipeline: str
    partitions: list[int] = field(default_factory=list)
    records: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    batches: int = 0
    bytes: int = 0
    redriven: int = 0
    split: int = 0
    abandoned: int = 0
    reached: dict[int, int] = field(default_factory=dict)
    stopped_by: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (Celery results are JSON): partitions as string keys."""
        out = {name: getattr(self, name) for name in self.__slots__}
        out["reached"] = {str(p): o for p, o in sorted(self.reached.items())}
        out["seconds"] = round(self.seconds, 3)
        return out


class Stop(Exception):
    """Ends the read loop early; the argument says why."""


@dataclass(slots=True)
class Run:
    """The state of one cycle, shared by the read loop and the outbox."""

    summary: Summary
    fences: dict[int, Fence]
    cursor: dict[int, int]  # next offset after the last record decoded or dead-lettered
    reach: dict[int, int]  # next offset after the last record recorded in the ledger
    flying: dict[int, int]  # batches in flight per partition
    paused: set[int] = field(default_factory=set)
    batch: list[Message] = field(default_factory=list)
    records: list[Any] = field(default_factory=list)  # the batch's records, for dead letters
    batch_bytes: int = 0
    batch_since: float = 0.0  # when the batch in hand got its first record (the clock's time)
    ends: dict[int, int] | None = None  # until_caught_up: each partition's log end at start
    # Records the decoder refused since the last flush, with why: dead-lettered at the flush,
    # after the dead-letter brake counted them with the others read (``tally``).
    refused: list[tuple[Any, str]] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)


def why(status: str) -> str:
    """The ``stopped_by`` of a cycle whose lease or position was taken away."""
    return "reset" if status == "reset" else "lease_lost"
