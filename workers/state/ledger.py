"""The in-flight ledger: batches handed off but not yet finished, per partition, in Redis.

A partition's committed offset follows completion, not hand-off. The puller *records* each
batch's slice of a partition (its records ``[start, end)``) before handing the batch off; the
pipeline's last stage *finishes* it. The committed offset is the start of the oldest slice not
finished, or, with none in flight, how far the owner has read (``reach``): everything before it
was processed or dead-lettered. A slice not finished by its due time is read again from Kafka
and handed off again (``redrive``), whole or in halves. Scripts run on Redis's clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from workers.state.keys import Space


@dataclass(frozen=True, slots=True)
class Slice:
    """The records ``[start, end)`` of one partition in one batch. ``batch`` is empty for a
    range that was read but left nothing to hand off (all dead-lettered)."""

    partition: int
    batch: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Fence:
    """What a writer must still hold for a partition: its lease epoch and the reset
    generation it read the partition under."""

    epoch: int
    generation: int


@dataclass(frozen=True, slots=True)
class InFlight:
    """A slice handed off and not finished. ``handoffs`` counts hand-offs (1 + re-drives),
    ``starts`` how often a first stage began it; ``due_ms`` is on the ledger's clock."""

    partition: int
    batch: str
    start: int
    end: int
    handoffs: int
    starts: int
    due_ms: int

    @property
    def records(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class PartitionState:
    """One partition's books: ``committed`` (None: nothing stored), ``reach`` (the next offset
    after everything handed off or dead-lettered; None: nothing recorded since the last
    reset), the reset ``generation`` and the slices in flight, oldest first."""

    partition: int
    committed: int | None
    reach: int | None
    generation: int
    in_flight: tuple[InFlight, ...]
    malformed: tuple[str, ...] = ()

    @property
    def read_from(self) -> int | None:
        """Where the owner continues reading: past everything recorded."""
        if self.committed is None:
            return None
        return max(self.committed, self.reach if self.reach is not None else self.committed)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The books of some partitions, read at ``now_ms`` on the ledger's clock."""

    now_ms: int
    partitions: dict[int, PartitionState]


@dataclass(frozen=True, slots=True)
class Settled:
    """What a write did to one partition, and its committed offset afterwards. ``status``:
    ``written``/``finished`` (done), ``unknown`` (already finished, split or reset),
    ``not_owner``/``fenced`` (lease gone), ``reset`` (an operator reset won), ``gap`` (the
    slice does not start where the partition's books end), ``missing`` (no offset stored)."""

    status: str
    committed: int | None
    in_flight: int | None = None  # slices in flight afterwards (None when refused)

    @property
    def ok(self) -> bool:
        return self.status in ("written", "finished")


class Ledger(Protocol):
    """The books of in-flight batches. Implementations: ``RedisLedger`` and the in-memory twin
    ``workers.state.local.MemoryLedger``; one contract suite tests both."""

    def snapshot(self, space: Space, partitions: Iterable[int]) -> Snapshot:
        """The books of ``partitions`` and the ledger's clock."""

    def record(
        self,
        space: Space,
        token: str,
        fences: Mapping[int, Fence],
        slices: Sequence[Slice],
        due_in_ms: int,
    ) -> dict[int, Settled]:
        """Before a hand-off: add each slice (at most one per partition) to its partition's
        books, due in ``due_in_ms``; a slice without a batch only moves ``reach``. Fenced:
        refused for a partition whose lease or generation moved, or where the slice does not
        start at ``read_from``."""

    def finish(self, space: Space, slices: Sequence[Slice]) -> dict[int, Settled]:
        """The pipeline finished these slices (their last stage returned, or their records
        were dead-lettered): drop them and move each committed offset up to the oldest slice
        still in flight, or to ``reach``. Never moves an offset backwards; a slice no longer
        in the books (finished before, split, or reset) changes nothing."""

    def begin(
        self, space: Space, slices: Sequence[Slice], budget_ms: int, max_starts: int
    ) -> list[int | None]:
        """A first stage starts a batch: count a start on each slice still in the books and
        give it ``budget_ms`` from now to finish. Returns the starts per slice (None: no
        longer in the books). A slice started more than ``max_starts`` times is made due at
        once, for its owner to split or dead-letter it."""

    def redrive(
        self,
        space: Space,
        token: str,
        fence: Fence,
        entry: InFlight,
        parts: Sequence[Slice],
        due_in_ms: int,
    ) -> str:
        """Replace an overdue slice by ``parts`` covering the same records: itself again (one
        more hand-off, starts kept) or new halves (fresh counts). Fenced like ``record``.
        Returns ``redriven``, ``finished`` (it finished meanwhile) or a refusal."""

    def expedite(self, space: Space, slices: Sequence[Slice], *, unstart: bool = False) -> None:
        """Make slices due now (their hand-off failed: re-drive them at the next cycle). With
        ``unstart``, also take back one start (a stage held the batch for the dead-letter
        brake: the batch did not fail, and must not be split for it)."""


def covers(entry: InFlight, parts: Sequence[Slice]) -> None:
    """Re-driven parts cover exactly the records of the slice they replace, in order."""
    bounds = [(p.start, p.end) for p in parts]
    edges = [entry.start] + [end for _, end in bounds]
    if (
        not parts
        or any(p.partition != entry.partition for p in parts)
        or [start for start, _ in bounds] != edges[:-1]
        or edges[-1] != entry.end
        or any(start >= end for start, end in bounds)
    ):
        raise ValueError(f"parts {bounds} do not cover [{entry.start}, {entry.end})")
