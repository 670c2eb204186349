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
from dataclasses import dataclass, field

from workers.exceptions import OffsetStoreError
from workers.state.keys import Space
from workers.state.leases import Grant, Holder, Lease, Owner, rotated
from workers.state.ledger import InFlight
from workers.state.offsets import MAX_OFFSET, Checkpoint, Mode, Outcome, Position, Status


@dataclass(slots=True)
class _LeaseRow:
    token: str
    epoch: int
    owner: Owner
    since_ms: int
    expires: float


@dataclass(slots=True)
class Books:
    """One partition's books of the in-flight ledger, as the twin keeps them."""

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
    books: dict[Space, dict[int, Books]] = field(default_factory=dict)

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
