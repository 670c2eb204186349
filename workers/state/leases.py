"""Partition ownership among worker processes: Redis leases with fencing epochs.

A lease is a Redis hash per partition (owner token, epoch, host, pid, task, since) with a TTL.
It is taken atomically, renewed by compare-and-extend and released by compare-and-delete,
all in Lua; never a bare EXPIRE or DEL. Every acquisition bumps the partition's epoch, and
the offset store refuses a commit whose epoch is not the current one. Live owners register in
a members set, so each takes at most its fair share (ceil(partitions / members)) and several
processes on several machines split a topic without Kafka consumer-group rebalances.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis

from workers.state.keys import Space
from workers.state.redis_errors import translated

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Owner:
    """Who holds a lease, as shown to operators."""

    host: str
    pid: int
    task: str = ""

    @classmethod
    def current(cls, task: str = "") -> Owner:
        return cls(socket.gethostname(), os.getpid(), task)


@dataclass(frozen=True, slots=True)
class Lease:
    """One partition held. ``deadline`` is on the holder's monotonic clock: past it, the holder
    must assume the lease is gone (it is set before the request is sent, so it is never later
    than the expiry Redis applies)."""

    partition: int
    epoch: int
    deadline: float


@dataclass(frozen=True, slots=True)
class Grant:
    """The result of ``acquire``: the leases held now, and the fair share they were sized by."""

    leases: tuple[Lease, ...]
    share: int
    members: int

    @property
    def partitions(self) -> list[int]:
        return [lease.partition for lease in self.leases]


@dataclass(frozen=True, slots=True)
class Holder:
    """A lease as stored, for the CLI: ``expires_in`` seconds from now."""

    partition: int
    token: str
    epoch: int
    host: str
    pid: int
    task: str
    since_ms: int
    expires_in: float


class Leases(Protocol):
    """Lease operations of one owner (``token``). Implementations: ``RedisLeases`` and the
    in-memory twin ``workers.state.local.MemoryLeases``; one contract suite tests both."""

    token: str

    def acquire(self, space: Space, partitions: Sequence[int], want: int | None = None) -> Grant:
        """Keep what this owner holds (up to its share) and take free partitions up to
        ``min(want, fair share)``; surplus leases are released at once. Atomic. Call it
        between pull cycles, when nothing read from a surplus partition is still in flight."""

    def renew(self, space: Space, leases: Iterable[Lease]) -> list[Lease]:
        """Extend the leases still held (same token and epoch); the others are gone."""

    def release(self, space: Space, leases: Iterable[Lease], leave: bool = True) -> int:
        """Delete the leases still held; ``leave`` also drops this owner from the members."""

    def holders(self, space: Space, partitions: Iterable[int]) -> dict[int, Holder]:
        """Current holders of the given partitions (free partitions are absent)."""


# Broken state is repaired, and reported: a members or epochs key of the wrong type is dropped,
# a lease that is no hash, lacks its owner or epoch, or never expires (tampered with, or left by
# a bug) is deleted instead of blocking its partition forever, and an epoch that is not a whole
# number restarts from 0.
_ACQUIRE = """
local token, ttl, want, total = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local broken = {}
local kinds = {'zset', 'hash'}
for i = 1, 2 do
  local kind = redis.call('TYPE', KEYS[i]).ok
  if kind ~= kinds[i] and kind ~= 'none' then
    redis.call('DEL', KEYS[i])
    table.insert(broken, KEYS[i])
  end
end
for i = 3, #KEYS do
  local kind = redis.call('TYPE', KEYS[i]).ok
  if kind ~= 'none' then
    local lease = {false, false}
    if kind == 'hash' then lease = redis.call('HMGET', KEYS[i], 'token', 'epoch') end
    if kind ~= 'hash' or not lease[1] or not tonumber(lease[2])
        or redis.call('PTTL', KEYS[i]) < 0 then
      redis.call('DEL', KEYS[i])
      table.insert(broken, KEYS[i])
    end
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + ttl, token)
redis.call('PEXPIRE', KEYS[1], ttl * 2)
local members = redis.call('ZCARD', KEYS[1])
local share = math.ceil(total / members)
local limit = math.min(want, share)
local out, n = {}, 0
for i = 3, #KEYS do
  local lease = redis.call('HMGET', KEYS[i], 'token', 'epoch')
  if lease[1] == token then
    if n < limit then
      redis.call('PEXPIRE', KEYS[i], ttl)
      n = n + 1
      table.insert(out, {ARGV[5 + i], lease[2]})
    else
      redis.call('DEL', KEYS[i])
    end
  end
end
for i = 3, #KEYS do
  if n >= limit then break end
  if redis.call('EXISTS', KEYS[i]) == 0 then
    local p = ARGV[5 + i]
    local epoch = tonumber(redis.call('HGET', KEYS[2], p)) or 0
    if epoch < 0 or epoch ~= math.floor(epoch) then epoch = 0 end
    epoch = epoch + 1
    redis.call('HSET', KEYS[2], p, string.format('%.0f', epoch))
    redis.call('HSET', KEYS[i], 'token', token, 'epoch', epoch, 'host', ARGV[5],
               'pid', ARGV[6], 'task', ARGV[7], 'since', now)
    redis.call('PEXPIRE', KEYS[i], ttl)
    n = n + 1
    table.insert(out, {p, string.format('%.0f', epoch)})
  end
end
return {share, members, out, broken}
"""

_RENEW = """
local token, ttl = ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + ttl, token)
redis.call('PEXPIRE', KEYS[1], ttl * 2)
local out = {}
for i = 2, #KEYS do
  local lease = redis.call('HMGET', KEYS[i], 'token', 'epoch')
  if lease[1] == token and lease[2] == ARGV[1 + i] then
    redis.call('PEXPIRE', KEYS[i], ttl)
    table.insert(out, i - 1)
  end
end
return out
"""

_RELEASE = """
local token, leave = ARGV[1], ARGV[2]
local n = 0
for i = 2, #KEYS do
  local lease = redis.call('HMGET', KEYS[i], 'token', 'epoch')
  if lease[1] == token and lease[2] == ARGV[1 + i] then
    redis.call('DEL', KEYS[i])
    n = n + 1
  end
end
if leave == '1' then redis.call('ZREM', KEYS[1], token) end
return n
"""


def rotated(partitions: Sequence[int], token: str) -> list[int]:
    """The partitions in an order that differs per owner, so owners probe different ones first."""
    parts = sorted(partitions)
    if not parts:
        return parts
    start = zlib.crc32(token.encode()) % len(parts)
    return parts[start:] + parts[:start]


class RedisLeases:
    """Leases of one owner on a real Redis. ``ttl`` is in seconds."""

    def __init__(
        self,
        client: redis.Redis,
        owner: Owner,
        ttl: float,
        *,
        token: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.owner = owner
        self.ttl = ttl
        self.token = token or uuid.uuid4().hex
        self._clock = clock
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    @property
    def _ttl_ms(self) -> int:
        return int(self.ttl * 1000)

    def _deadline(self) -> float:
        # From the whole milliseconds Redis is given, so it never outlives the Redis expiry.
        return self._clock() + self._ttl_ms / 1000

    def acquire(self, space: Space, partitions: Sequence[int], want: int | None = None) -> Grant:
        order = rotated(partitions, self.token)
        keys = [space.key("members"), space.key("epochs")]
        keys += [space.key("lease", p) for p in order]
        limit = len(order) if want is None else want
        args: list[Any] = [self.token, self._ttl_ms, limit, len(order)]
        args += [self.owner.host, self.owner.pid, self.owner.task, *order]
        deadline = self._deadline()
        with translated(f"acquire leases for {space}"):
            share, members, rows, broken = self._acquire(keys=keys, args=args)
        for key in broken:
            logger.error(
                "%s: %s was broken (wrong type, no owner or epoch, or no expiry: tampered with, "
                "or left by a bug); deleted so that its partition can be read again",
                space, key.decode() if isinstance(key, bytes) else key,
            )  # fmt: skip
        leases = sorted(
            (Lease(int(p), int(e), deadline) for p, e in rows), key=lambda lease: lease.partition
        )
        return Grant(tuple(leases), int(share), int(members))

    def renew(self, space: Space, leases: Iterable[Lease]) -> list[Lease]:
        held = list(leases)
        if not held:
            return []
        keys = [space.key("members"), *(space.key("lease", x.partition) for x in held)]
        deadline = self._deadline()
        with translated(f"renew leases for {space}"):
            kept = self._renew(keys=keys, args=[self.token, self._ttl_ms, *(x.epoch for x in held)])
        return [Lease(held[i - 1].partition, held[i - 1].epoch, deadline) for i in kept]

    def release(self, space: Space, leases: Iterable[Lease], leave: bool = True) -> int:
        held = list(leases)
        keys = [space.key("members"), *(space.key("lease", x.partition) for x in held)]
        args = [self.token, "1" if leave else "0", *(x.epoch for x in held)]
        with translated(f"release leases for {space}"):
            return int(self._release(keys=keys, args=args))

    def holders(self, space: Space, partitions: Iterable[int]) -> dict[int, Holder]:
        parts = list(partitions)
        with translated(f"read leases for {space}"):
            pipe = self.client.pipeline(transaction=True)
            for p in parts:
                pipe.hgetall(space.key("lease", p))
                pipe.pttl(space.key("lease", p))
            replies = pipe.execute()
        out: dict[int, Holder] = {}
        for p, raw, pttl in zip(parts, replies[::2], replies[1::2], strict=True):
            if not raw or pttl < 0:
                continue
            info = {k.decode(): v.decode() for k, v in raw.items()}
            out[p] = Holder(
                partition=p,
                token=info["token"],
                epoch=int(info["epoch"]),
                host=info.get("host", ""),
                pid=int(info.get("pid", 0)),
                task=info.get("task", ""),
                since_ms=int(info.get("since", 0)),
                expires_in=pttl / 1000,
            )
        return out
