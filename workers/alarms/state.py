"""Alert state in Redis: events applied to alerts per fingerprint, atomically, idempotently.

One Lua script applies one event to one alert: it first records the event's record id and
event id (with a TTL longer than the redelivery window), so an event applied once is never
applied again, then moves the alert. A batch is one pipeline of such scripts; concurrent
workers on one fingerprint are serialised by Redis and cannot lose an update.

Rules (``last_change`` is the event time of the alert's last status change):
- no alert, or a closed one: an ``ABNORMAL`` event opens a new alert (a new id); other
  events change nothing; an event not newer than a closed alert's ``last_change`` is stale;
- an event older than ``last_change`` is stale (out-of-order input neither reopens nor flips);
- ``ABNORMAL`` updates count, last time and severity (1 is the most severe) and turns a
  recovered alert abnormal again; ``RECOVERED`` recovers; ``CLOSED`` closes;
- ``close_quiet`` closes alerts whose last event is older than the quiet period.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from workers.keys import alarm_key
from workers.redis_errors import translated

OUTCOMES = ("duplicate", "stale", "ignored", "opened", "updated", "recovered", "closed")

# KEYS: alert, record marker, event marker. ARGV: ttl, time, severity, status, new alert id,
# fields json (alert_name, fingerprint, dimensions, target, ...). Returns {outcome, alert json}.
_APPLY = """
local ttl = tonumber(ARGV[1])
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ttl) then return {'duplicate'} end
if not redis.call('SET', KEYS[3], '1', 'NX', 'EX', ttl) then return {'duplicate'} end
local t, sev, ev = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local raw = redis.call('GET', KEYS[1])
local a = raw and cjson.decode(raw) or nil
local change
if a == nil or a.status == 'CLOSED' then
  if a ~= nil and t <= a.last_change then return {'stale'} end
  if ev ~= 'ABNORMAL' then return {'ignored'} end
  local f = cjson.decode(ARGV[6])
  local version = a and a.version or 0
  a = f
  a.id, a.status, a.first_time, a.last_time, a.last_change = ARGV[5], 'ABNORMAL', t, t, t
  a.count, a.severity, a.version = 1, sev, version
  change = 'opened'
else
  if t < a.last_change then return {'stale'} end
  if ev == 'ABNORMAL' then
    a.count = a.count + 1
    if t > a.last_time then a.last_time = t end
    if sev < a.severity then a.severity = sev end
    if a.status == 'RECOVERED' then a.status, a.last_change = 'ABNORMAL', t end
    change = 'updated'
  elseif ev == 'RECOVERED' then
    if a.status == 'RECOVERED' then return {'ignored'} end
    a.status, a.last_change = 'RECOVERED', t
    if t > a.last_time then a.last_time = t end
    change = 'recovered'
  else
    a.status, a.last_change, a.closed_by = 'CLOSED', t, 'event'
    change = 'closed'
  end
end
a.version = a.version + 1
local out = cjson.encode(a)
redis.call('SET', KEYS[1], out)
return {change, out}
"""

# KEYS: alert, index. ARGV: fingerprint, cutoff ms, now ms. Closes a quiet alert.
_CLOSE_QUIET = """
local raw = redis.call('GET', KEYS[1])
if not raw then redis.call('ZREM', KEYS[2], ARGV[1]) return false end
local a = cjson.decode(raw)
if a.status == 'CLOSED' then redis.call('ZREM', KEYS[2], ARGV[1]) return false end
if a.last_time >= tonumber(ARGV[2]) then return false end
a.status, a.last_change, a.closed_by = 'CLOSED', tonumber(ARGV[3]), 'quiet'
a.version = a.version + 1
local out = cjson.encode(a)
redis.call('SET', KEYS[1], out)
redis.call('ZREM', KEYS[2], ARGV[1])
return out
"""

_FIELDS = ("alert_name", "fingerprint", "dimensions", "target", "description", "metric", "cluster",
           "strategy_id", "bk_biz_id")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Applied:
    """What one event did: ``outcome`` (see ``OUTCOMES``) and the alert after it, if changed."""

    record_id: str
    outcome: str
    alert: dict[str, Any] | None


def alert_id(fingerprint: str, record_id: str) -> str:
    """Deterministic, so the same input opens the same alert id on any replay."""
    return hashlib.sha1(f"{fingerprint}|{record_id}".encode()).hexdigest()[:20]


class AlertStore:
    """Alert state of one key prefix on ``client``."""

    def __init__(self, client: redis.Redis, prefix: str, dedupe_ttl: int) -> None:
        self.client = client
        self.prefix = prefix
        self.dedupe_ttl = dedupe_ttl
        self._apply = client.register_script(_APPLY)
        self._close_quiet = client.register_script(_CLOSE_QUIET)

    def apply(self, events: Sequence[dict[str, Any]]) -> list[Applied]:
        """Apply normalised events (with ``record_id``) in order, in one round trip."""
        if not events:
            return []
        index = alarm_key(self.prefix, "alerts")
        with translated("apply alarm events"):
            pipe = self.client.pipeline(transaction=False)
            for event in events:
                fp = event["fingerprint"]
                keys = [
                    alarm_key(self.prefix, "alert", fp),
                    alarm_key(self.prefix, "applied", fp, "r:" + event["record_id"]),
                    alarm_key(self.prefix, "applied", fp, "e:" + event["event_id"]),
                ]
                fields = json.dumps({name: event.get(name) for name in _FIELDS})
                args = [self.dedupe_ttl, event["time"], event["severity"], event["status"],
                        alert_id(fp, event["record_id"]), fields]  # fmt: skip
                self._apply(keys=keys, args=args, client=pipe)
                # The index only ever moves forward; the sweep re-checks under the script.
                pipe.zadd(index, {fp: event["time"]}, gt=True)
            replies = pipe.execute()
        out = []
        for event, reply in zip(events, replies[::2], strict=True):
            outcome = _text(reply[0])
            alert = json.loads(reply[1]) if len(reply) > 1 else None
            out.append(Applied(event["record_id"], outcome, alert))
        return out

    def close_quiet(self, cutoff_ms: int, now_ms: int, limit: int = 1000) -> list[dict[str, Any]]:
        """Close alerts with no event since ``cutoff_ms``; returns the closed alerts."""
        index = alarm_key(self.prefix, "alerts")
        with translated("close quiet alerts"):
            found: Any = self.client.zrangebyscore(
                index, "-inf", f"({cutoff_ms}", start=0, num=limit
            )
            quiet = [_text(raw) for raw in found]
            pipe = self.client.pipeline(transaction=False)
            for fp in quiet:
                keys = [alarm_key(self.prefix, "alert", fp), index]
                self._close_quiet(keys=keys, args=[fp, cutoff_ms, now_ms], client=pipe)
            replies = pipe.execute() if quiet else []
        return [json.loads(reply) for reply in replies if reply]

    def get(self, fingerprint: str) -> dict[str, Any] | None:
        with translated("read an alert"):
            raw = self.client.get(alarm_key(self.prefix, "alert", fingerprint))
        return None if raw is None else dict(json.loads(raw))

    def count(self, outcomes: Iterable[str], extra: dict[str, int] | None = None) -> None:
        """Add outcomes (and other counters) to the pipeline's statistics hash."""
        totals: dict[str, int] = dict(extra or {})
        for outcome in outcomes:
            totals[outcome] = totals.get(outcome, 0) + 1
        if not totals:
            return
        key = alarm_key(self.prefix, "alarm-stats")
        with translated("count alarm outcomes"):
            pipe = self.client.pipeline(transaction=False)
            for name, n in totals.items():
                pipe.hincrby(key, name, n)
            pipe.execute()

    def stats(self) -> dict[str, int]:
        with translated("read alarm statistics"):
            raw = self.client.hgetall(alarm_key(self.prefix, "alarm-stats"))
        return {_text(k): int(v) for k, v in raw.items()}


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
