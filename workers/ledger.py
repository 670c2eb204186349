"""The in-flight ledger: batches handed off but not yet finished, per partition, in Redis.

A partition's committed offset follows completion, not hand-off. The puller *records* each
batch's slice of a partition (its records ``[start, end)``) before handing the batch off; the
pipeline's last stage *finishes* it. The committed offset is the start of the oldest slice not
finished, or, with none in flight, how far the owner has read (``reach``): everything before it
was processed or dead-lettered. A slice not finished by its due time is read again from Kafka
and handed off again (``redrive``), whole or in halves. Scripts run on Redis's clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis

from workers.keys import Space
from workers.offsets import parse_stored
from workers.redis_errors import translated


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
    ``workers.memory.MemoryLedger``; one contract suite tests both."""

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

    def expedite(self, space: Space, slices: Sequence[Slice]) -> None:
        """Make slices due now (their hand-off failed: re-drive them at the next cycle)."""


# Shared by the scripts: the time on Redis's clock in ms; the fence check of a writer; and
# settling a partition's committed offset at the oldest slice in flight, or at reach.
_LIB = """
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function fence(lease_key, token, epoch, gens_key, p, gen)
  local lease = redis.call('HMGET', lease_key, 'token', 'epoch')
  if lease[1] ~= token then return 'not_owner' end
  if lease[2] ~= epoch then return 'fenced' end
  if (redis.call('HGET', gens_key, p) or '0') ~= gen then return 'reset' end
  return false
end
local function settle(offsets_key, ledger_key, p, ttl)
  local fields = redis.call('HGETALL', ledger_key)
  local low
  local n = 0
  for j = 1, #fields, 2 do
    local v
    if fields[j] == 'reach' then
      v = tonumber(fields[j + 1])
    elseif string.sub(fields[j], 1, 2) == 'b:' then
      v = tonumber(string.match(fields[j + 1], '^(%d+) %d+ %d+ %d+ %d+$'))
      if v then n = n + 1 end  -- a malformed entry holds nothing back (its owner drops it)
    end
    if v and (not low or v < low) then low = v end
  end
  local cur = redis.call('HGET', offsets_key, p)
  if low and (not cur or low > tonumber(cur)) then
    redis.call('HSET', offsets_key, p, string.format('%.0f', low))
    if ttl > 0 then
      redis.call('EXPIRE', offsets_key, ttl)
      redis.call('EXPIRE', ledger_key, ttl)
    end
    return {low, n}
  end
  if cur then return {tonumber(cur), n} end
  return {false, n}
end
local function entry(start, stop, handoffs, starts, due)
  local due_text = string.format('%.0f', due)
  return start .. ' ' .. stop .. ' ' .. handoffs .. ' ' .. starts .. ' ' .. due_text
end
"""

# KEYS: offsets, generations, then (lease, ledger) per slice. ARGV: token, ttl, due_in, then
# (partition, epoch, generation, batch, start, end) per slice.
_RECORD = (
    _LIB
    + """
local token, ttl, due = ARGV[1], tonumber(ARGV[2]), clock() + tonumber(ARGV[3])
local out = {}
for i = 1, (#KEYS - 2) / 2 do
  local lease_key, ledger_key = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
  local a = 4 + (i - 1) * 6
  local p, batch = ARGV[a], ARGV[a + 3]
  local status = fence(lease_key, token, ARGV[a + 1], KEYS[2], p, ARGV[a + 2])
  local committed = redis.call('HGET', KEYS[1], p)
  local n = -1
  if not status then
    local reach = tonumber(redis.call('HGET', ledger_key, 'reach')) or -1
    if not committed then
      status = 'missing'
    elseif not tonumber(committed) then
      status = 'invalid'
    else
      if tonumber(committed) > reach then reach = tonumber(committed) end
      if tonumber(ARGV[a + 4]) ~= reach then
        status = 'gap'
      else
        redis.call('HSET', ledger_key, 'reach', ARGV[a + 5])
        if batch ~= '' then
          redis.call('HSET', ledger_key, 'b:' .. batch, entry(ARGV[a + 4], ARGV[a + 5], 1, 0, due))
        end
        status = 'written'
        committed, n = unpack(settle(KEYS[1], ledger_key, p, ttl))
      end
    end
  end
  table.insert(out, {p, status, committed or false, n})
end
return out
"""
)

# KEYS: offsets, then one ledger key per slice. ARGV: ttl, then (partition, batch) per slice.
_FINISH = (
    _LIB
    + """
local ttl = tonumber(ARGV[1])
local out = {}
for i = 2, #KEYS do
  local p, batch = ARGV[2 * i - 2], ARGV[2 * i - 1]
  local status = 'unknown'
  if redis.call('HDEL', KEYS[i], 'b:' .. batch) == 1 then status = 'finished' end
  local committed, n = unpack(settle(KEYS[1], KEYS[i], p, ttl))
  table.insert(out, {p, status, committed, n})
end
return out
"""
)

# KEYS: one ledger key per slice. ARGV: budget, max starts, then batch per slice.
_BEGIN = (
    _LIB
    + """
local now = clock()
local budget, most = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i = 1, #KEYS do
  local field = 'b:' .. ARGV[i + 2]
  local raw = redis.call('HGET', KEYS[i], field)
  local s, e, h, st, due
  if raw then s, e, h, st, due = string.match(raw, '^(%d+) (%d+) (%d+) (%d+) (%d+)$') end
  if s then
    st = tonumber(st) + 1
    local d = math.max(tonumber(due), now + budget)
    if st > most then d = now end
    redis.call('HSET', KEYS[i], field, entry(s, e, h, st, d))
    table.insert(out, st)
  else
    table.insert(out, -1)
  end
end
return out
"""
)

# KEYS: offsets, generations, lease, ledger. ARGV: token, epoch, generation, partition, old
# batch, due_in, then (batch, start, end) per part.
_REDRIVE = (
    _LIB
    + """
local old = ARGV[5]
local status = fence(KEYS[3], ARGV[1], ARGV[2], KEYS[2], ARGV[4], ARGV[3])
if status then return status end
local raw = redis.call('HGET', KEYS[4], 'b:' .. old)
if not raw then return 'finished' end
local h, st = string.match(raw, '^%d+ %d+ (%d+) (%d+) %d+$')
if not h then return 'finished' end  -- malformed: nothing to re-drive
local due = clock() + tonumber(ARGV[6])
redis.call('HDEL', KEYS[4], 'b:' .. old)
for a = 7, #ARGV, 3 do
  local handoffs, starts = 1, 0
  if ARGV[a] == old then handoffs, starts = tonumber(h) + 1, st end
  local value = entry(ARGV[a + 1], ARGV[a + 2], handoffs, starts, due)
  redis.call('HSET', KEYS[4], 'b:' .. ARGV[a], value)
end
return 'redriven'
"""
)

# KEYS: one ledger key per slice. ARGV: batch per slice.
_EXPEDITE = (
    _LIB
    + """
local now = clock()
for i = 1, #KEYS do
  local field = 'b:' .. ARGV[i]
  local raw = redis.call('HGET', KEYS[i], field)
  local s, e, h, st
  if raw then s, e, h, st = string.match(raw, '^(%d+) (%d+) (%d+) (%d+) %d+$') end
  if s then redis.call('HSET', KEYS[i], field, entry(s, e, h, st, now)) end
end
return 0
"""
)


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _opt_int(raw: Any) -> int | None:
    """An integer from a Redis reply; None for nil (Lua's false arrives as None) and for a
    stored value that is not an offset."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    return parse_stored(raw)[0]


_ENTRY = re.compile(r"([0-9]{1,20}) ([0-9]{1,20}) ([0-9]{1,9}) ([0-9]{1,9}) ([0-9]{1,20})")


def parse_books(
    partition: int, raw: Mapping[Any, Any]
) -> tuple[int | None, list[InFlight], list[str]]:
    """``reach``, the slices in flight, and the fields that are not valid entries (tampered
    with: the scripts ignore them, and the partition's owner drops them) from a ledger hash as
    Redis returns it."""
    reach: int | None = None
    in_flight: list[InFlight] = []
    malformed: list[str] = []
    for name, value in raw.items():
        field, text = _text(name), _text(value)
        found = _ENTRY.fullmatch(text)
        if field == "reach" and text.isascii() and text.isdigit() and len(text) <= 20:
            reach = int(text)
        elif field.startswith("b:") and found is not None and int(found[1]) < int(found[2]):
            start, end, handoffs, starts, due = (int(x) for x in found.groups())
            in_flight.append(InFlight(partition, field[2:], start, end, handoffs, starts, due))
        else:
            malformed.append(field)
    in_flight.sort(key=lambda x: (x.start, x.batch))
    return reach, in_flight, malformed


class RedisLedger:
    """The ledger on a real Redis (or Redis Cluster: all keys of a space share a slot).

    ``ttl`` (seconds) expires the books with the offsets (see ``RedisOffsetStore``). Redis
    errors are raised as ``RecoverableError`` (connection) or ``OffsetStoreError``.
    """

    def __init__(self, client: redis.Redis, ttl: int | None = None) -> None:
        self.client = client
        self.ttl = ttl or 0
        self._record = client.register_script(_RECORD)
        self._finish = client.register_script(_FINISH)
        self._begin = client.register_script(_BEGIN)
        self._redrive = client.register_script(_REDRIVE)
        self._expedite = client.register_script(_EXPEDITE)

    def snapshot(self, space: Space, partitions: Iterable[int]) -> Snapshot:
        parts = sorted(set(partitions))
        with translated(f"read the in-flight ledger of {space}"):
            pipe = self.client.pipeline(transaction=True)
            pipe.time()
            if parts:
                pipe.hmget(space.key("offsets"), [str(p) for p in parts])
                pipe.hmget(space.key("generations"), [str(p) for p in parts])
                for p in parts:
                    pipe.hgetall(space.key("ledger", p))
            replies = pipe.execute()
        seconds, micros = replies[0]
        states: dict[int, PartitionState] = {}
        if parts:
            offsets, gens, books = replies[1], replies[2], replies[3:]
            for p, offset, gen, raw in zip(parts, offsets, gens, books, strict=True):
                reach, in_flight, malformed = parse_books(p, raw)
                states[p] = PartitionState(
                    p,
                    parse_stored(offset)[0],
                    reach,
                    parse_stored(gen, 2**62)[0] or 0,
                    tuple(in_flight),
                    tuple(malformed),
                )
        return Snapshot(int(seconds) * 1000 + int(micros) // 1000, states)

    def record(
        self,
        space: Space,
        token: str,
        fences: Mapping[int, Fence],
        slices: Sequence[Slice],
        due_in_ms: int,
    ) -> dict[int, Settled]:
        if not slices:
            return {}
        _one_per_partition(slices)
        keys = [space.key("offsets"), space.key("generations")]
        args: list[Any] = [token, self.ttl, max(0, int(due_in_ms))]
        for s in slices:
            fence = fences[s.partition]
            keys += [space.key("lease", s.partition), space.key("ledger", s.partition)]
            args += [s.partition, fence.epoch, fence.generation, s.batch, s.start, s.end]
        with translated(f"record batches in flight for {space}"):
            rows = self._record(keys=keys, args=args)
        return _settled(rows)

    def finish(self, space: Space, slices: Sequence[Slice]) -> dict[int, Settled]:
        if not slices:
            return {}
        _one_per_partition(slices)
        keys = [space.key("offsets"), *(space.key("ledger", s.partition) for s in slices)]
        args: list[Any] = [self.ttl]
        for s in slices:
            args += [s.partition, s.batch]
        with translated(f"finish batches of {space}"):
            rows = self._finish(keys=keys, args=args)
        return _settled(rows)

    def begin(
        self, space: Space, slices: Sequence[Slice], budget_ms: int, max_starts: int
    ) -> list[int | None]:
        if not slices:
            return []
        keys = [space.key("ledger", s.partition) for s in slices]
        args: list[Any] = [max(0, int(budget_ms)), max_starts, *(s.batch for s in slices)]
        with translated(f"begin a batch of {space}"):
            rows = self._begin(keys=keys, args=args)
        return [None if int(n) < 0 else int(n) for n in rows]

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
        p = entry.partition
        keys = [
            space.key("offsets"),
            space.key("generations"),
            space.key("lease", p),
            space.key("ledger", p),
        ]
        args: list[Any] = [token, fence.epoch, fence.generation, p, entry.batch]
        args.append(max(0, int(due_in_ms)))
        for part in parts:
            args += [part.batch, part.start, part.end]
        with translated(f"re-drive a batch of {space}"):
            return _text(self._redrive(keys=keys, args=args))

    def expedite(self, space: Space, slices: Sequence[Slice]) -> None:
        if not slices:
            return
        keys = [space.key("ledger", s.partition) for s in slices]
        with translated(f"expedite batches of {space}"):
            self._expedite(keys=keys, args=[s.batch for s in slices])


def _settled(rows: Sequence[Sequence[Any]]) -> dict[int, Settled]:
    return {
        int(p): Settled(_text(status), _opt_int(c), None if int(n) < 0 else int(n))
        for p, status, c, n in rows
    }


def _one_per_partition(slices: Sequence[Slice]) -> None:
    partitions = [s.partition for s in slices]
    if len(set(partitions)) != len(partitions):
        raise ValueError(f"at most one slice per partition in one call: {partitions}")


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
