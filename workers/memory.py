"""In-memory twins of the offset store, the leases and the in-flight ledger, for unit tests
(ours and users').

They keep the same rules as the Lua scripts and are held to them by the same contract suite
that runs against Redis. One ``MemoryState`` stands for one Redis; its clock is injectable.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from workers.exceptions import OffsetStoreError
from workers.keys import Space
from workers.leases import Grant, Holder, Lease, Owner, rotated
from workers.ledger import Fence, InFlight, PartitionState, Settled, Slice, Snapshot, covers
from workers.offsets import MAX_OFFSET, Checkpoint, Mode, Outcome, Position, Status


@dataclass(slots=True)
class _LeaseRow:
    token: str
    epoch: int
    owner: Owner
    since_ms: int
    expires: float


@dataclass(slots=True)
class _Books:
    reach: int | None = None
    in_flight: dict[str, InFlight] = field(default_factory=dict)


@dataclass(slots=True)
class MemoryState:
    """What a Redis would hold, for every space. ``clock`` is in seconds."""

    clock: Callable[[], float] = time.monotonic
    lock: threading.Lock = field(default_factory=threading.Lock)
    offsets: dict[Space, dict[int, int]] = field(default_factory=dict)
    generations: dict[Space, dict[int, int]] = field(default_factory=dict)
    skipped: dict[Space, dict[int, int]] = field(default_factory=dict)
    epochs: dict[Space, dict[int, int]] = field(default_factory=dict)
    leases: dict[Space, dict[int, _LeaseRow]] = field(default_factory=dict)
    members: dict[Space, dict[str, float]] = field(default_factory=dict)
    books: dict[Space, dict[int, _Books]] = field(default_factory=dict)

    def drop_books(self, space: Space, partition: int) -> None:
        self.books.get(space, {}).pop(partition, None)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def live_leases(self, space: Space) -> dict[int, _LeaseRow]:
        rows = self.leases.setdefault(space, {})
        now = self.clock()
        for p in [p for p, row in rows.items() if row.expires <= now]:
            del rows[p]
        return rows


class MemoryOffsetStore:
    """The offset store's twin (same contract as ``RedisOffsetStore``; TTL is not modelled)."""

    def __init__(self, state: MemoryState | None = None) -> None:
        self.state = state or MemoryState()

    def read(self, space: Space, partitions: Iterable[int]) -> dict[int, Position]:
        with self.state.lock:
            offsets = self.state.offsets.get(space, {})
            gens = self.state.generations.get(space, {})
            return {p: Position(offsets.get(p), gens.get(p, 0)) for p in partitions}

    def stored(self, space: Space) -> dict[int, Position]:
        with self.state.lock:
            gens = self.state.generations.get(space, {})
            offsets = self.state.offsets.get(space, {})
            return {p: Position(o, gens.get(p, 0)) for p, o in sorted(offsets.items())}

    def commit(
        self, space: Space, token: str, checkpoints: Sequence[Checkpoint], mode: Mode = "advance"
    ) -> dict[int, Outcome]:
        out: dict[int, Outcome] = {}
        with self.state.lock:
            offsets = self.state.offsets.setdefault(space, {})
            gens = self.state.generations.get(space, {})
            leases = self.state.live_leases(space)
            for c in checkpoints:
                if not 0 <= c.offset <= MAX_OFFSET:
                    raise OffsetStoreError(
                        f"{space}[{c.partition}]: offset {c.offset} is outside 0..{MAX_OFFSET}"
                    )
                cur = offsets.get(c.partition)
                lease = leases.get(c.partition)
                status: Status
                if lease is None or lease.token != token:
                    status = "not_owner"
                elif lease.epoch != c.epoch:
                    status = "fenced"
                elif gens.get(c.partition, 0) != c.generation:
                    status = "reset"
                elif mode == "init" and cur is not None:
                    status = "exists"
                elif mode == "advance" and cur is not None and cur > c.offset:
                    status = "backwards"
                elif cur == c.offset:
                    status = "unchanged"
                else:
                    offsets[c.partition] = cur = c.offset
                    status = "written"
                    if mode != "advance":
                        self.state.drop_books(space, c.partition)
                out[c.partition] = Outcome(status, cur)
        return out

    def reset(self, space: Space, offsets: Mapping[int, int]) -> dict[int, Position]:
        before: dict[int, Position] = {}
        with self.state.lock:
            stored = self.state.offsets.setdefault(space, {})
            gens = self.state.generations.setdefault(space, {})
            for p, offset in sorted(offsets.items()):
                if not 0 <= offset <= MAX_OFFSET:
                    raise OffsetStoreError(
                        f"{space}[{p}]: offset {offset} is outside 0..{MAX_OFFSET}"
                    )
                before[p] = Position(stored.get(p), gens.get(p, 0))
                stored[p] = offset
                gens[p] = gens.get(p, 0) + 1
                self.state.drop_books(space, p)
        return before

    def count_skipped(self, space: Space, partition: int, records: int) -> int:
        with self.state.lock:
            counts = self.state.skipped.setdefault(space, {})
            counts[partition] = counts.get(partition, 0) + records
            return counts[partition]

    def skipped(self, space: Space) -> dict[int, int]:
        with self.state.lock:
            return dict(sorted(self.state.skipped.get(space, {}).items()))


class MemoryLeases:
    """The leases' twin (same contract as ``RedisLeases``)."""

    def __init__(
        self, state: MemoryState, owner: Owner, ttl: float, *, token: str | None = None
    ) -> None:
        self.state = state
        self.owner = owner
        self.ttl = ttl
        self.token = token or uuid.uuid4().hex

    def _join(self, space: Space, now: float) -> int:
        members = self.state.members.setdefault(space, {})
        for token in [t for t, expires in members.items() if expires <= now]:
            del members[token]
        members[self.token] = now + self.ttl
        return len(members)

    def acquire(self, space: Space, partitions: Sequence[int], want: int | None = None) -> Grant:
        order = rotated(partitions, self.token)
        with self.state.lock:
            now = self.state.clock()
            members = self._join(space, now)
            share = math.ceil(len(order) / members) if order else 0
            limit = min(len(order) if want is None else want, share)
            rows = self.state.live_leases(space)
            epochs = self.state.epochs.setdefault(space, {})
            held: list[Lease] = []
            for p in order:
                row = rows.get(p)
                if row is not None and row.token == self.token:
                    if len(held) < limit:
                        row.expires = now + self.ttl
                        held.append(Lease(p, row.epoch, now + self.ttl))
                    else:
                        del rows[p]
            for p in order:
                if len(held) >= limit:
                    break
                if p not in rows:
                    epochs[p] = epochs.get(p, 0) + 1
                    since = int(time.time() * 1000)
                    rows[p] = _LeaseRow(self.token, epochs[p], self.owner, since, now + self.ttl)
                    held.append(Lease(p, epochs[p], now + self.ttl))
        return Grant(tuple(sorted(held, key=lambda x: x.partition)), share, members)

    def renew(self, space: Space, leases: Iterable[Lease]) -> list[Lease]:
        kept: list[Lease] = []
        with self.state.lock:
            now = self.state.clock()
            self._join(space, now)
            rows = self.state.live_leases(space)
            for lease in leases:
                row = rows.get(lease.partition)
                if row is not None and row.token == self.token and row.epoch == lease.epoch:
                    row.expires = now + self.ttl
                    kept.append(Lease(lease.partition, lease.epoch, now + self.ttl))
        return kept

    def release(self, space: Space, leases: Iterable[Lease], leave: bool = True) -> int:
        n = 0
        with self.state.lock:
            rows = self.state.live_leases(space)
            for lease in leases:
                row = rows.get(lease.partition)
                if row is not None and row.token == self.token and row.epoch == lease.epoch:
                    del rows[lease.partition]
                    n += 1
            if leave:
                self.state.members.get(space, {}).pop(self.token, None)
        return n

    def holders(self, space: Space, partitions: Iterable[int]) -> dict[int, Holder]:
        out: dict[int, Holder] = {}
        with self.state.lock:
            now = self.state.clock()
            rows = self.state.live_leases(space)
            for p in partitions:
                row = rows.get(p)
                if row is not None:
                    o = row.owner
                    out[p] = Holder(
                        p,
                        row.token,
                        row.epoch,
                        o.host,
                        o.pid,
                        o.task,
                        row.since_ms,
                        row.expires - now,
                    )
        return out


class MemoryLedger:
    """The in-flight ledger's twin (same contract as ``RedisLedger``; clock: ``state.clock``)."""

    def __init__(self, state: MemoryState) -> None:
        self.state = state

    def _books(self, space: Space, partition: int) -> _Books:
        return self.state.books.setdefault(space, {}).setdefault(partition, _Books())

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
                b = books.get(p, _Books())
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

    def expedite(self, space: Space, slices: Sequence[Slice]) -> None:
        with self.state.lock:
            now = self.state.now_ms()
            for s in slices:
                books = self.state.books.get(space, {}).get(s.partition)
                if books is not None and s.batch in books.in_flight:
                    books.in_flight[s.batch] = replace(books.in_flight[s.batch], due_ms=now)
