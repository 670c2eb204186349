"""The dead-letter brake on Redis: one hash per pipeline (``<prefix>:brake:{…}``) under the
pipeline's hash tag, written by Lua scripts that follow ``workers.state.brake.judge``.

Fields: ``seen`` and ``dead`` (the current window), ``run:<source>`` (dead letters in a row),
and once tripped ``tripped_ms``, ``reason``, ``source``, ``ratio``, ``consecutive``,
``window_seen``, ``window_dead`` and ``reminded_ms``. A trip also adds one to the pipeline's
``brake_trips`` counter (``workers.state.stats``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from workers.state.brake import REMIND_MS, Limits, Tally, Trip, Verdict
from workers.state.keys import Space
from workers.state.redis_errors import translated

_CLOCK = """
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local TRIP = {'tripped_ms', 'reason', 'source', 'ratio', 'consecutive', 'window_seen',
              'window_dead'}
"""

# KEYS: brake, stats. ARGV: source, window, allowed (-1: off), most in a row (-1: off),
# records counted, dead, passed, head, tail, longest.
REPORT = (
    _CLOCK
    + """
if redis.call('HEXISTS', KEYS[1], 'tripped_ms') == 1 then return {1} end
local window, allowed, most = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local counted, dead, passed = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local head, tail, longest = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local seen = tonumber(redis.call('HGET', KEYS[1], 'seen')) or 0
local wdead = tonumber(redis.call('HGET', KEYS[1], 'dead')) or 0
if allowed >= 0 then
  if counted > 0 and seen >= window then seen, wdead = 0, 0 end
  seen, wdead = seen + counted, wdead + dead
  redis.call('HSET', KEYS[1], 'seen', seen, 'dead', wdead)
end
local peak = 0
if most >= 0 then
  local field = 'run:' .. ARGV[1]
  local run = tonumber(redis.call('HGET', KEYS[1], field)) or 0
  if passed == 0 then
    run = run + dead
    peak = run
  else
    peak, run = math.max(run + head, longest), tail
  end
  if run > 0 then
    redis.call('HSET', KEYS[1], field, run)
  else
    redis.call('HDEL', KEYS[1], field)
  end
end
local reason
if most >= 0 and peak > most then
  reason = 'consecutive'
elseif allowed >= 0 and wdead > allowed then
  reason = 'ratio'
else
  return {0}
end
local ratio = 0
if seen > 0 then ratio = math.min(1, wdead / seen) end
local now = clock()
local trip = {now, reason, ARGV[1], string.format('%.6f', ratio), peak, seen, wdead}
for i = 1, #TRIP do redis.call('HSET', KEYS[1], TRIP[i], trip[i]) end
redis.call('HSET', KEYS[1], 'reminded_ms', now)
redis.call('HINCRBY', KEYS[2], 'brake_trips', 1)
return {1, trip}
"""
)

# KEYS: brake. ARGV: remind_ms.
CHECK = (
    _CLOCK
    + """
local trip = redis.call('HMGET', KEYS[1], unpack(TRIP))
if not trip[1] then return {0} end
local now = clock()
local last = tonumber(redis.call('HGET', KEYS[1], 'reminded_ms')) or 0
local remind = 0
if now - last >= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'reminded_ms', now)
  remind = 1
end
return {remind, trip}
"""
)

# KEYS: brake. Clears it; returns the trip it cleared.
RESUME = (
    _CLOCK
    + """
local trip = redis.call('HMGET', KEYS[1], unpack(TRIP))
redis.call('DEL', KEYS[1])
if not trip[1] then return {0} end
return {1, trip}
"""
)

_FIELDS = ("tripped_ms", "reason", "source", "ratio", "consecutive", "window_seen", "window_dead")


class RedisBrake:
    """``workers.state.brake.Brake`` on Redis (or a Redis Cluster: one slot per pipeline)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._report = client.register_script(REPORT)
        self._check = client.register_script(CHECK)
        self._resume = client.register_script(RESUME)

    def report(
        self, space: Space, limits: Limits, source: str, tally: Tally, counted: int
    ) -> Verdict:
        most = -1 if limits.max_consecutive is None else limits.max_consecutive
        counts = [counted, tally.dead, tally.passed, tally.head, tally.tail, tally.longest]
        args: list[str | int] = [source, limits.window, limits.allowed, most, *counts]
        with translated(f"report dead letters of {space}"):
            reply = self._report(keys=[space.key("brake"), space.key("stats")], args=args)
        if not int(reply[0]):
            return Verdict(False)
        return Verdict(True, _trip(reply[1]) if len(reply) > 1 else None)

    def passed(self, space: Space, source: str) -> None:
        with translated(f"end a run of dead letters of {space}"):
            self.client.hdel(space.key("brake"), f"run:{source}")

    def check(self, space: Space, remind_ms: int = REMIND_MS) -> tuple[Trip | None, bool]:
        with translated(f"read the dead-letter brake of {space}"):
            reply = self._check(keys=[space.key("brake")], args=[remind_ms])
        if len(reply) < 2:
            return None, False
        return _trip(reply[1]), bool(int(reply[0]))

    def state(self, space: Space) -> Trip | None:
        with translated(f"read the dead-letter brake of {space}"):
            values = self.client.hmget(space.key("brake"), list(_FIELDS))
        return None if values[0] is None else _trip(values)

    def resume(self, space: Space) -> Trip | None:
        with translated(f"resume the dead-letter brake of {space}"):
            reply = self._resume(keys=[space.key("brake")], args=[])
        return _trip(reply[1]) if int(reply[0]) else None


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _number(raw: Any, kind: type[int] | type[float]) -> Any:
    try:
        return kind(_text(raw)) if raw is not None else kind(0)
    except ValueError:  # tampered with: shown as 0, still tripped
        return kind(0)


def _trip(values: Sequence[Any]) -> Trip:
    ms, reason, source, ratio, consecutive, seen, dead = values
    return Trip(
        _number(ms, int), _text(reason), _text(source), _number(ratio, float),
        _number(consecutive, int), _number(seen, int), _number(dead, int),
    )  # fmt: skip
