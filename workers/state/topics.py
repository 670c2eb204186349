"""What Redis knows about the topics of a pipeline that reads many (``topics`` or
``topic_pattern``), and the one-round-trip check of which of them have work.

Both touch keys of one hash slot per script call (the registry: one key; the books: one
topic's keys, tagged ``{cluster/group/topic}``), so they run on Redis Cluster too.

The registry (one hash per pipeline, ``workers.state.keys.pipeline_key``) records each
topic the pipeline found: ``initial`` for those found on its first look, the time found (ms)
for those that appeared later. Which start policy a partition without a stored offset follows
depends on it (``start`` or ``new_topic_start``). ``@since`` records the first look, so that a
pipeline that found no topic at first still tells later topics from initial ones.

``IdleProbe`` reads, for many topics at once (one pipelined Lua call per topic, one round trip
in all), each partition's stored offset and how many batches its ledger holds: a partition whose
offset is its log end and whose ledger holds nothing has nothing to read or re-drive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from workers.state.keys import Space
from workers.state.offsets import parse_stored
from workers.state.redis_errors import translated
from workers.state.scripting import run

INITIAL = "initial"
_SINCE = "@since"  # not a topic name: Kafka's names are [A-Za-z0-9._-]

# KEYS[1]: the registry. ARGV[1]: now (ms); ARGV[2]: TTL (s, 0: none); ARGV[3]: '1' to drop
# the known topics not listed; ARGV[4..]: the topics found. Returns each listed topic's value
# and whether this call added it, then the topics dropped.
_REGISTER = """
local first = redis.call('HEXISTS', KEYS[1], '@since') == 0
if first then redis.call('HSET', KEYS[1], '@since', ARGV[1]) end
local mark = ARGV[1]
if first then mark = 'initial' end
local listed, out = {}, {}
for i = 4, #ARGV do
  listed[ARGV[i]] = true
  local added = redis.call('HSETNX', KEYS[1], ARGV[i], mark)
  table.insert(out, {redis.call('HGET', KEYS[1], ARGV[i]), added})
end
local gone = {}
if ARGV[3] == '1' then
  for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
    if name ~= '@since' and not listed[name] then
      redis.call('HDEL', KEYS[1], name)
      table.insert(gone, name)
    end
  end
end
if tonumber(ARGV[2]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return {out, gone}
"""

# KEYS[1]: a topic's offsets; KEYS[2..]: its partitions' ledgers; ARGV: the partitions.
# Returns, per partition, the stored offset (nil: none) and the batches its ledger holds.
_IDLE = """
local out = {}
for i = 2, #KEYS do
  table.insert(out, redis.call('HGET', KEYS[1], ARGV[i - 1]) or '')
  table.insert(out, redis.call('HLEN', KEYS[i]) - redis.call('HEXISTS', KEYS[i], 'reach'))
end
return out
"""


@dataclass(frozen=True, slots=True)
class Registered:
    """What one look at the topics changed: each topic found, ``initial`` or not; the topics
    this look added; the known topics it dropped (gone from the cluster)."""

    initial: Mapping[str, bool]
    added: tuple[str, ...]
    dropped: tuple[str, ...]


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


class TopicRegistry:
    """The registry of one pipeline's topics on a real Redis (key: ``pipeline_key``)."""

    def __init__(self, client: redis.Redis, key: str, ttl: int | None = None) -> None:
        self.client = client
        self.key = key
        self.ttl = ttl or 0
        self._register = client.register_script(_REGISTER)

    def register(self, found: Sequence[str], now_ms: int, *, drop: bool = True) -> Registered:
        """Record the topics ``found`` (a new one: as found now, or as initial on the first
        look); with ``drop``, forget the known topics not found."""
        args: list[Any] = [now_ms, self.ttl, "1" if drop else "0", *found]
        with translated(f"register the topics of {self.key}"):
            rows, gone = self._register(keys=[self.key], args=args)
        initial = {t: _text(v) == INITIAL for t, (v, _) in zip(found, rows, strict=True)}
        added = tuple(t for t, (_, a) in zip(found, rows, strict=True) if int(a))
        return Registered(initial, added, tuple(sorted(_text(g) for g in gone)))

    def looked(self) -> bool:
        """True once a pull has looked at the topics (even if it found none)."""
        with translated(f"read the topics of {self.key}"):
            return bool(self.client.hexists(self.key, _SINCE))

    def known(self) -> dict[str, str]:
        """Every registered topic and its mark (``initial`` or the time found, ms)."""
        with translated(f"read the topics of {self.key}"):
            raw = self.client.hgetall(self.key)
        return {_text(k): _text(v) for k, v in raw.items() if _text(k) != _SINCE}


@dataclass(frozen=True, slots=True)
class Books:
    """One partition as the idle check sees it: its stored offset (None: none, or not a valid
    offset) and the batches its ledger holds."""

    offset: int | None
    in_flight: int

    def idle_at(self, end: int) -> bool:
        """Nothing to read or re-drive: stored exactly at the log end, nothing in flight."""
        return self.offset == end and self.in_flight == 0


class IdleProbe:
    """Reads the books of many topics' partitions in one round trip."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._idle = client.register_script(_IDLE)

    def books(self, spaces: Mapping[Space, Sequence[int]]) -> dict[Space, dict[int, Books]]:
        """Per space, per partition: what the idle check needs."""
        items = [(s, sorted(parts)) for s, parts in spaces.items() if parts]
        if not items:
            return {}
        with translated("read the books of the pipeline's topics"):
            pipe = self.client.pipeline(transaction=False)
            for space, parts in items:
                keys = [space.key("offsets"), *(space.key("ledger", p) for p in parts)]
                run(self._idle, keys, parts, pipe)  # on a cluster too (workers.state.scripting)
            replies = pipe.execute()
        out: dict[Space, dict[int, Books]] = {}
        for (space, parts), row in zip(items, replies, strict=True):
            out[space] = {
                p: Books(parse_stored(row[2 * i])[0] if row[2 * i] else None, int(row[2 * i + 1]))
                for i, p in enumerate(parts)
            }
        return out
