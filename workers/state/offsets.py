"""The offset store: one position per (cluster, group, topic, partition) in Redis.

An offset is always the *next* record to read: once the pipeline has finished offset N (and
everything before it), N + 1 is stored; ``workers.state.ledger`` moves it as batches finish.
Writes are fenced by one Lua script per call: a partition is written only while the caller
holds its lease (same owner token and lease epoch) and only if no reset happened since the
caller read it (same generation); a plain commit never moves an offset backwards.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import redis

from workers.exceptions import OffsetStoreError
from workers.state.keys import Space
from workers.state.redis_errors import translated

logger = logging.getLogger(__name__)

# advance: forward only (a normal commit); init: only where nothing is stored (start policy);
# repair: any direction (an out-of-range offset moved by policy). All three are fenced.
Mode = Literal["advance", "init", "repair"]
Status = Literal[
    "written", "unchanged", "backwards", "exists", "invalid", "not_owner", "fenced", "reset"
]
WRITTEN: frozenset[str] = frozenset({"written", "unchanged"})


# The largest offset kept: Redis's Lua holds integers exactly up to 2**53 (Kafka's own limit,
# 2**63 - 1, is out of reach anyway: 2**53 records at a million a second take 285 years).
MAX_OFFSET = 2**53
_INTEGER = re.compile(r"-?[0-9]+")


@dataclass(frozen=True, slots=True)
class Position:
    """What is stored for one partition: ``offset`` is None when nothing is stored yet.
    ``problem`` says what is wrong when the stored offset or generation is not valid (not an
    integer, negative, too large: tampered with); the offset is None and the generation 0
    then, and the caller must repair or refuse the partition, never read from it."""

    offset: int | None
    generation: int
    problem: str = ""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A fenced write of one partition's next offset.

    ``epoch`` is the lease epoch the caller holds; ``generation`` the reset generation it
    read the position under.
    """

    partition: int
    offset: int
    epoch: int
    generation: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a write did to one partition; ``stored`` is the offset stored afterwards."""

    status: Status
    stored: int | None

    @property
    def ok(self) -> bool:
        return self.status in WRITTEN


class OffsetStore(Protocol):
    """Where partition positions live. Implementations: ``RedisOffsetStore`` and the in-memory
    twin ``workers.state.local.MemoryOffsetStore``; one contract suite tests both."""

    def read(self, space: Space, partitions: Iterable[int]) -> dict[int, Position]:
        """Positions of the given partitions (offset None where nothing is stored)."""

    def stored(self, space: Space) -> dict[int, Position]:
        """Every partition with a stored offset."""

    def commit(
        self, space: Space, token: str, checkpoints: Sequence[Checkpoint], mode: Mode = "advance"
    ) -> dict[int, Outcome]:
        """Fenced write of several partitions at once; reports per partition what happened."""

    def reset(self, space: Space, offsets: Mapping[int, int]) -> dict[int, Position]:
        """Operator reset: set offsets unconditionally and bump each partition's generation, so
        no pull that read before it can write over it. Returns the positions before."""

    def count_skipped(self, space: Space, partition: int, records: int) -> int:
        """Add to the partition's count of records skipped by the out-of-range policy."""

    def skipped(self, space: Space) -> dict[int, int]:
        """Records skipped per partition by the out-of-range policy, since the store began."""


# KEYS: offsets, generations, then one lease key per partition, then one ledger key per
# partition; ARGV: token, mode, ttl, then (partition, offset, epoch, generation) per partition,
# in the order of the lease keys. An init or repair starts the partition's books afresh: the
# in-flight ledger (``workers.state.ledger``) described records of another position.
_COMMIT = """
local token, mode, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out = {}
local wrote = false
local n = (#KEYS - 2) / 2
for i = 3, 2 + n do
  local a = 4 + (i - 3) * 4
  local p, off, epoch, gen = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2], ARGV[a + 3]
  local cur = redis.call('HGET', KEYS[1], p)
  local status
  local lease = redis.call('HMGET', KEYS[i], 'token', 'epoch')
  if lease[1] ~= token then
    status = 'not_owner'
  elseif lease[2] ~= epoch then
    status = 'fenced'
  elseif (redis.call('HGET', KEYS[2], p) or '0') ~= gen then
    status = 'reset'
  elseif mode == 'init' and cur then
    status = 'exists'
  elseif mode == 'advance' and cur and not tonumber(cur) then
    status = 'invalid'  -- not a number: only a repair or a reset may replace it
  elseif mode == 'advance' and cur and tonumber(cur) > off then
    status = 'backwards'
  elseif cur and tonumber(cur) == off then
    status = 'unchanged'
  else
    redis.call('HSET', KEYS[1], p, off)
    if mode ~= 'advance' then redis.call('DEL', KEYS[i + n]) end
    cur = tostring(off)
    status = 'written'
    wrote = true
  end
  table.insert(out, {p, status, cur or false})
end
if wrote and ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return out
"""

# KEYS: offsets, generations, then one ledger key per partition; ARGV: ttl, then (partition,
# offset) pairs. A reset drops the partition's batches in flight: their records are read
# again from the new offset (or were skipped on purpose), and their late finishes change nothing.
_RESET = """
local ttl = tonumber(ARGV[1])
local out = {}
for a = 2, #ARGV, 2 do
  local p = ARGV[a]
  local before = redis.call('HGET', KEYS[1], p)
  local gen = redis.call('HGET', KEYS[2], p) or '0'
  -- A generation that is not a whole number >= 0 (tampered with) restarts from 0.
  local g = tonumber(gen)
  if not g or g < 0 or g ~= math.floor(g) then g = 0 end
  redis.call('HSET', KEYS[1], p, ARGV[a + 1])
  redis.call('HSET', KEYS[2], p, string.format('%.0f', g + 1))
  redis.call('DEL', KEYS[2 + a / 2])
  table.insert(out, {p, before or false, gen})
end
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return out
"""


def _int(value: Any) -> int | None:
    return parse_stored(value)[0]


def parse_stored(raw: Any, limit: int = MAX_OFFSET) -> tuple[int | None, str]:
    """(value, problem) of a stored offset or generation as Redis returns it: None and "" when
    absent; None and what is wrong when it is not an integer from 0 to ``limit``."""
    if raw is None or raw is False:
        return None, ""
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    if not _INTEGER.fullmatch(text):
        shown = text if len(text) <= 40 else text[:40] + "..."
        return None, f"{shown!r} is not an integer"
    if text.startswith("-"):
        return None, f"{text[:40]} is negative"
    if len(text) > 20 or int(text) > limit:  # never int() of thousands of digits
        return None, f"{text[:40]} is beyond the largest offset kept ({limit})"
    return int(text), ""


def _position(space: Space, partition: int, offset: Any, generation: Any) -> Position:
    value, bad_offset = parse_stored(offset)
    gen, bad_gen = parse_stored(generation, 2**62)
    problems = []
    if bad_offset:
        problems.append(f"{space.key('offsets')} field {partition}: offset {bad_offset}")
    if bad_gen:
        problems.append(f"{space.key('generations')} field {partition}: generation {bad_gen}")
    return Position(value, gen or 0, "; ".join(problems))


class RedisOffsetStore:
    """The offset store on a real Redis (or Redis Cluster: all keys of a space share a slot).

    ``ttl`` (seconds) expires a group's offsets after that long without a write; None (the
    default) keeps them forever, because offsets that vanish silently replay or skip data.
    Redis errors are raised as ``RecoverableError`` (connection) or ``OffsetStoreError``.
    """

    def __init__(self, client: redis.Redis, ttl: int | None = None) -> None:
        self.client = client
        self.ttl = ttl or 0
        self._commit = client.register_script(_COMMIT)
        self._reset = client.register_script(_RESET)

    def read(self, space: Space, partitions: Iterable[int]) -> dict[int, Position]:
        parts = list(partitions)
        if not parts:
            return {}
        with translated(f"read offsets for {space}"):
            pipe = self.client.pipeline(transaction=True)  # one consistent snapshot
            pipe.hmget(space.key("offsets"), [str(p) for p in parts])
            pipe.hmget(space.key("generations"), [str(p) for p in parts])
            offsets, gens = pipe.execute()
        return {p: _position(space, p, o, g) for p, o, g in zip(parts, offsets, gens, strict=True)}

    def stored(self, space: Space) -> dict[int, Position]:
        with translated(f"read offsets for {space}"):
            pipe = self.client.pipeline(transaction=True)
            pipe.hgetall(space.key("offsets"))
            pipe.hgetall(space.key("generations"))
            offsets, gens = pipe.execute()
        out: dict[int, Position] = {}
        for field, raw in offsets.items():
            partition, bad = parse_stored(field, 2**31)
            if partition is None:
                logger.warning("%s has a field that is no partition: %s", space.key("offsets"), bad)
                continue
            out[partition] = _position(space, partition, raw, gens.get(field))
        return dict(sorted(out.items()))

    def commit(
        self, space: Space, token: str, checkpoints: Sequence[Checkpoint], mode: Mode = "advance"
    ) -> dict[int, Outcome]:
        if not checkpoints:
            return {}
        keys = [space.key("offsets"), space.key("generations")]
        keys += [space.key("lease", c.partition) for c in checkpoints]
        keys += [space.key("ledger", c.partition) for c in checkpoints]
        args: list[Any] = [token, mode, self.ttl]
        for c in checkpoints:
            if not 0 <= c.offset <= MAX_OFFSET:
                raise OffsetStoreError(
                    f"{space}[{c.partition}]: offset {c.offset} is outside 0..{MAX_OFFSET}"
                )
            args += [c.partition, c.offset, c.epoch, c.generation]
        with translated(f"commit offsets for {space}"):
            rows = self._commit(keys=keys, args=args)
        return {int(p): Outcome(_status(s), _int(v)) for p, s, v in rows}

    def reset(self, space: Space, offsets: Mapping[int, int]) -> dict[int, Position]:
        if not offsets:
            return {}
        args: list[Any] = [self.ttl]
        keys = [space.key("offsets"), space.key("generations")]
        for partition, offset in sorted(offsets.items()):
            if not 0 <= offset <= MAX_OFFSET:
                raise OffsetStoreError(
                    f"{space}[{partition}]: offset {offset} is outside 0..{MAX_OFFSET}"
                )
            args += [partition, offset]
            keys.append(space.key("ledger", partition))
        with translated(f"reset offsets for {space}"):
            rows = self._reset(keys=keys, args=args)
        return {int(p): _position(space, int(p), before, gen) for p, before, gen in rows}

    def count_skipped(self, space: Space, partition: int, records: int) -> int:
        with translated(f"count skipped records for {space}"):
            return int(self.client.hincrby(space.key("skipped"), str(partition), records))

    def skipped(self, space: Space) -> dict[int, int]:
        with translated(f"read skipped counts for {space}"):
            raw = self.client.hgetall(space.key("skipped"))
        counts = {parse_stored(p, 2**31)[0]: parse_stored(n, 2**62)[0] for p, n in raw.items()}
        return {p: n or 0 for p, n in sorted(counts.items()) if p is not None}


def _status(raw: bytes | str) -> Status:
    text = raw.decode() if isinstance(raw, bytes) else raw
    return text  # type: ignore[return-value]
