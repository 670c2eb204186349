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

from workers.alarms.lua import APPLY, CLAIM, CLOSE_QUIET, FORGET, MARK_CLOSE, RELEASE
from workers.state.keys import alarm_key
from workers.state.redis_errors import translated

OUTCOMES = ("duplicate", "replayed", "stale", "ignored", "opened", "updated", "recovered", "closed")
_INT_FIELDS = ("count", "severity", "first_time", "last_time", "last_change", "version")

_FIELDS = ("alert_name", "fingerprint", "dimensions", "target", "description", "metric", "cluster",
           "strategy_id", "bk_biz_id")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Applied:
    """What one event did: ``outcome`` (see ``OUTCOMES``) and the alert after it, if changed."""

    record_id: str
    outcome: str
    alert: dict[str, Any] | None
    change: str = ""  # the change the record made (also for a replayed record)
    # A quiet close whose publication failed, of the alert this event replaced: emit it first.
    unpublished_close: dict[str, Any] | None = None


def alert_id(fingerprint: str, record_id: str) -> str:
    """Deterministic, so the same input opens the same alert id on any replay."""
    return hashlib.sha1(f"{fingerprint}|{record_id}".encode()).hexdigest()[:20]


class AlertStore:
    """Alert state of one key prefix on ``client``."""

    def __init__(self, client: redis.Redis, prefix: str, dedupe_ttl: int) -> None:
        self.client = client
        self.prefix = prefix
        self.dedupe_ttl = dedupe_ttl
        self._apply = client.register_script(APPLY)
        self._close_quiet = client.register_script(CLOSE_QUIET)
        self._forget = client.register_script(FORGET)
        self._mark_close = client.register_script(MARK_CLOSE)
        self._claim = client.register_script(CLAIM)
        self._release = client.register_script(RELEASE)

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
            if len(reply) > 1:
                change, flat = json.loads(reply[1])
                close = _alert(json.loads(reply[2])[1]) if len(reply) > 2 else None
                outcome = _text(reply[0])
                out.append(Applied(event["record_id"], outcome, _alert(flat), change, close))
            else:
                out.append(Applied(event["record_id"], _text(reply[0]), None))
        return out

    def close_quiet(self, cutoff_ms: int, limit: int = 1000) -> list[dict[str, Any]]:
        """Close alerts with no event since ``cutoff_ms`` (as of their last event: a later
        event opens a new alert); returns them, with those closed by an earlier call whose
        close was not yet published. Call ``forget_closed`` once the closes are published."""
        index = alarm_key(self.prefix, "alerts")
        with translated("close quiet alerts"):
            found: Any = self.client.zrangebyscore(
                index, "-inf", f"({cutoff_ms}", start=0, num=limit
            )
            quiet = [_text(raw) for raw in found]
            pipe = self.client.pipeline(transaction=False)
            for fp in quiet:
                keys = [alarm_key(self.prefix, "alert", fp), index]
                self._close_quiet(keys=keys, args=[fp, cutoff_ms], client=pipe)
            replies = pipe.execute() if quiet else []
        return [_alert(json.loads(reply)[1]) for reply in replies if reply]

    def forget_closed(self, alerts: Sequence[dict[str, Any]], cutoff_ms: int) -> None:
        """Drop quiet-closed alerts from the index of open alerts, once published."""
        if not alerts:
            return
        args = [cutoff_ms, *(a["fingerprint"] for a in alerts)]
        with translated("update the index of open alerts"):
            self._forget(keys=[alarm_key(self.prefix, "alerts")], args=args)

    def get(self, fingerprint: str) -> dict[str, Any] | None:
        with translated("read an alert"):
            raw = self.client.hgetall(alarm_key(self.prefix, "alert", fingerprint))
        if not raw:
            return None
        return _alert([_text(x) for pair in raw.items() for x in pair])

    def unpublished(self, changes: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The changes not yet confirmed published (a retried build may emit some again)."""
        if not changes:
            return []
        with translated("check published alert changes"):
            pipe = self.client.pipeline(transaction=False)
            for change in changes:
                pipe.get(self._published_key(change))
            seen = pipe.execute()
        return [change for change, done in zip(changes, seen, strict=True) if done != b"1"]

    def claim(self, changes: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], set[str]]:
        """Claim changes for sending, before they are sent: returns those to send (not yet
        confirmed) and the ids among them that an earlier run claimed without confirming
        (they may be on the output topic already)."""
        if not changes:
            return [], set()
        with translated("claim alert changes"):
            pipe = self.client.pipeline(transaction=False)
            for change in changes:
                self._claim(keys=[self._published_key(change)], args=[self.dedupe_ttl], client=pipe)
            states = [_text(x) for x in pipe.execute()]
        send = [c for c, state in zip(changes, states, strict=True) if state != "published"]
        again = {
            c["change_id"] for c, state in zip(changes, states, strict=True) if state == "claimed"
        }
        return send, again

    def release(self, changes: Sequence[dict[str, Any]]) -> None:
        """Give back the claims of changes that were never sent (a later run sends them as
        new, not as possible duplicates)."""
        with translated("release alert change claims"):
            pipe = self.client.pipeline(transaction=False)
            for change in changes:
                self._release(keys=[self._published_key(change)], client=pipe)
            pipe.execute()

    def mark_published(self, changes: Sequence[dict[str, Any]]) -> None:
        """Remember the changes as sent; a quiet close is also marked on its alert, so the
        sweep stops returning it and a new alert opening over it need not carry it."""
        with translated("mark alert changes published"):
            pipe = self.client.pipeline(transaction=False)
            for change in changes:
                pipe.set(self._published_key(change), "1", ex=self.dedupe_ttl)
                alert = change["alert"]
                if alert.get("closed_by") == "quiet":
                    self._mark_close(keys=[alarm_key(self.prefix, "alert", alert["fingerprint"])],
                                     args=[alert["id"], alert["version"]], client=pipe)  # fmt: skip
            pipe.execute()

    def _published_key(self, change: dict[str, Any]) -> str:
        fp = change["alert"]["fingerprint"]
        return alarm_key(self.prefix, "applied", fp, "p:" + change["change_id"])

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


def _alert(flat: Sequence[str]) -> dict[str, Any]:
    """An alert from its hash fields (as HGETALL lists them): ints typed, meta merged in."""
    fields = dict(zip(flat[::2], flat[1::2], strict=True))
    alert: dict[str, Any] = json.loads(fields.pop("meta", "{}"))
    alert.update(fields)
    alert.pop("close_published", None)
    for name in _INT_FIELDS:
        alert[name] = int(alert[name])
    alert.setdefault("closed_by", None)
    return alert


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
