"""The in-flight ledger's in-process twin (same contract as ``RedisLedger``; one contract suite
tests both), on the ``MemoryState`` of ``workers.state.local``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from workers.state.keys import Space
from workers.state.ledger import Fence, InFlight, PartitionState, Settled, Slice, Snapshot, covers
from workers.state.local import Books, MemoryState


class MemoryLedger:
    """The in-flight ledger's twin (same contract as ``RedisLedger``; clock: ``state.clock``)."""

    def __init__(self, state: MemoryState) -> None:
        self.state = state

    def _books(self, space: Space, partition: int) -> Books:
        return self.state.books.setdefault(space, {}).setdefault(partition, Books())

    def _fence(self, space: Space, token: str, partition: int, fence: Fence) -> str | None:
        row = self.state.live_leases(space).get(partition)
        if row is None or row.token != token:
            return "not_owner"
        if row.epoch != fence.epoch:
            return "fenced"
        if self.state.generations.get(space, {}).get(partition, 0) != fence.generation:
            return "reset"
        return None

    def _settle(self, space: Space, partition: int) -> tuple[int | None, int]:
        offsets = self.state.offsets.setdefault(space, {})
        books = self.state.books.get(space, {}).get(partition)
        marks = [] if books is None else [e.start for e in books.in_flight.values()]
        flying = len(marks)
        if books is not None and books.reach is not None:
            marks.append(books.reach)
        cur = offsets.get(partition)
        if marks and (cur is None or min(marks) > cur):
            offsets[partition] = cur = min(marks)
        return cur, flying

    def snapshot(self, space: Space, partitions: Iterable[int]) -> Snapshot:
        with self.state.lock:
            offsets = self.state.offsets.get(space, {})
            gens = self.state.generations.get(space, {})
            books = self.state.books.get(space, {})
            out: dict[int, PartitionState] = {}
            for p in sorted(set(partitions)):
                b = books.get(p, Books())
                flying = tuple(sorted(b.in_flight.values(), key=lambda x: (x.start, x.batch)))
                out[p] = PartitionState(p, offsets.get(p), b.reach, gens.get(p, 0), flying)
            return Snapshot(self.state.now_ms(), out)

    def record(
        self,
        space: Space,
        token: str,
        fences: Mapping[int, Fence],
        slices: Sequence[Slice],
        due_in_ms: int,
    ) -> dict[int, Settled]:
        if len({s.partition for s in slices}) != len(slices):
            raise ValueError(f"at most one slice per partition in one call: {slices}")
        out: dict[int, Settled] = {}
        with self.state.lock:
            due = self.state.now_ms() + max(0, due_in_ms)
            for s in slices:
                committed = self.state.offsets.get(space, {}).get(s.partition)
                flying: int | None = None
                status = self._fence(space, token, s.partition, fences[s.partition])
                if status is None:
                    books = self._books(space, s.partition)
                    if committed is None:
                        status = "missing"
                    elif s.start != max(committed, books.reach or committed):
                        status = "gap"
                    else:
                        books.reach = s.end
                        if s.batch:
                            books.in_flight[s.batch] = InFlight(
                                s.partition, s.batch, s.start, s.end, 1, 0, due
                            )
                        status = "written"
                        committed, flying = self._settle(space, s.partition)
                out[s.partition] = Settled(status, committed, flying)
        return out

    def finish(self, space: Space, slices: Sequence[Slice]) -> dict[int, Settled]:
        if len({s.partition for s in slices}) != len(slices):
            raise ValueError(f"at most one slice per partition in one call: {slices}")
        out: dict[int, Settled] = {}
        with self.state.lock:
            for s in slices:
                books = self.state.books.get(space, {}).get(s.partition)
                gone = books is not None and books.in_flight.pop(s.batch, None) is not None
                committed, flying = self._settle(space, s.partition)
                out[s.partition] = Settled("finished" if gone else "unknown", committed, flying)
        return out

    def begin(
        self, space: Space, slices: Sequence[Slice], budget_ms: int, max_starts: int
    ) -> list[int | None]:
        out: list[int | None] = []
        with self.state.lock:
            now = self.state.now_ms()
            for s in slices:
                books = self.state.books.get(space, {}).get(s.partition)
                e = None if books is None else books.in_flight.get(s.batch)
                if books is None or e is None:
                    out.append(None)
                    continue
                starts = e.starts + 1
                due = now if starts > max_starts else max(e.due_ms, now + max(0, budget_ms))
                books.in_flight[s.batch] = replace(e, starts=starts, due_ms=due)
                out.append(starts)
        return out

    def redrive(
        self,
        space: Space,
        token: str,
        fence: Fence,
        entry: InFlight,
        parts: Sequence[Slice],
        due_in_ms: int,
    ) -> str:
        covers(entry, parts)
        with self.state.lock:
            status = self._fence(space, token, entry.partition, fence)
            if status is not None:
                return status
            books = self._books(space, entry.partition)
            old = books.in_flight.pop(entry.batch, None)
            if old is None:
                return "finished"
            due = self.state.now_ms() + max(0, due_in_ms)
            for part in parts:
                again = part.batch == old.batch
                books.in_flight[part.batch] = InFlight(
                    part.partition,
                    part.batch,
                    part.start,
                    part.end,
                    old.handoffs + 1 if again else 1,
                    old.starts if again else 0,
                    due,
                )
            return "redriven"

    def expedite(self, space: Space, slices: Sequence[Slice], *, unstart: bool = False) -> None:
        with self.state.lock:
            now = self.state.now_ms()
            for s in slices:
                books = self.state.books.get(space, {}).get(s.partition)
                if books is not None and s.batch in books.in_flight:
                    entry = books.in_flight[s.batch]
                    starts = max(0, entry.starts - int(unstart))
                    books.in_flight[s.batch] = replace(entry, due_ms=now, starts=starts)
