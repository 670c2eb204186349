"""Alert state in Redis: events applied to alerts per fingerprint, atomically, idempotently.

A batch of events is applied by one Lua script call per chunk of up to ``CHUNK`` events (all
chunks in one pipeline round trip). For each event the script first records the event's record
id and event id (with a TTL longer than the redelivery window), so an event applied once is
never applied again, then moves the alert. Concurrent workers on one fingerprint are
serialised by Redis and cannot lose an update.

Keys: one alert's keys share the hash tag ``{fingerprint}`` (its hash ``alert:{fp}`` and its
markers ``applied:{fp}:r:<record id>``, ``applied:{fp}:e:<event id>`` and
``applied:{fp}:p:<change id>``); the index of open alerts and the statistics are single keys,
written by their own commands. A script call touches only the alert keys of the items given to
it, so with ``per_slot`` (for Redis Cluster) items are grouped by hash slot, one call per slot;
the events of one fingerprint keep their order either way, and events of different
fingerprints touch disjoint keys, so both give the same results. A record marker keeps the
change its record made as ``[change, alert]`` (0.2.0 and earlier kept the alert's hash as
HGETALL lists it; a replay reads both).

The index is kept apart from the alerts (another hash slot), so no script moves both: an
alert's event is applied before its fingerprint is added to the index, and a fingerprint
taken out of the index is checked afterwards and put back if an event opened its alert
meanwhile. So every alert the sweep may still close stays in the index.

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
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis
from redis.cluster import RedisCluster

from workers.alarms.lua import APPLY, CLAIM, CLOSE_QUIET, FORGET, MARK, RELEASE
from workers.alarms.replies import Applied, alert_of, as_applied, json_bytes, read_elements, text
from workers.exceptions import RecoverableError
from workers.metrics import record
from workers.state.keys import alarm_key
from workers.state.redis_errors import translated
from workers.state.scripting import run, slot

__all__ = ["CHUNK", "OUTCOMES", "AlertStore", "Applied", "alert_id", "json_bytes"]

OUTCOMES = ("duplicate", "replayed", "stale", "ignored", "opened", "updated", "recovered", "closed")
_FIELDS = ("alert_name", "fingerprint", "dimensions", "target", "description", "metric", "cluster",
           "strategy_id", "bk_biz_id")  # fmt: skip

# Items per script call. One call holds Redis for its whole run (about 2 ms per 100 events
# here): chunks bound that pause for other clients, and more calls per round trip cost next
# to nothing (one call per 500 events saved no measurable CPU).
CHUNK = 100

_CLAIMED = {"n": "new", "p": "published", "c": "claimed"}
_NONE: Mapping[str, bytes] = {}


def alert_id(fingerprint: str, record_id: str) -> str:
    """Deterministic, so the same input opens the same alert id on any replay."""
    return hashlib.sha1(f"{fingerprint}|{record_id}".encode()).hexdigest()[:20]


class AlertStore:
    """Alert state of one key prefix on ``client``. ``per_slot``: group the items of a batch
    by hash slot, one script call per slot, as Redis Cluster needs (the default on a cluster
    client); otherwise a call takes up to ``CHUNK`` items of any fingerprints. ``replicas``:
    events count as applied only once that many replicas have them (``WAIT``, up to
    ``replica_timeout_ms``), so that no failover to a replica loses what later stages act on;
    else ``apply`` raises ``RecoverableError`` (and a retry replays them)."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        dedupe_ttl: int,
        per_slot: bool | None = None,
        *,
        replicas: int = 0,
        replica_timeout_ms: int = 1000,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.dedupe_ttl = dedupe_ttl
        self.per_slot = isinstance(client, RedisCluster) if per_slot is None else per_slot
        self.replicas = replicas
        self.replica_timeout_ms = replica_timeout_ms
        self._apply = client.register_script(APPLY)
        self._close_quiet = client.register_script(CLOSE_QUIET)
        self._forget = client.register_script(FORGET)
        self._mark = client.register_script(MARK)
        self._claim = client.register_script(CLAIM)
        self._release = client.register_script(RELEASE)

    def _calls(self, fingerprints: Sequence[str]) -> list[list[int]]:
        """Positions of items (by their fingerprints), grouped into script calls: chunks of
        at most ``CHUNK`` in order; with ``per_slot``, first grouped by hash slot."""
        if not self.per_slot:
            size = len(fingerprints)
            return [list(range(i, min(i + CHUNK, size))) for i in range(0, size, CHUNK)]
        slots: dict[str, int] = {}
        groups: dict[int, list[int]] = {}
        for i, fp in enumerate(fingerprints):
            found = slots.get(fp)
            if found is None:
                found = slots[fp] = slot(alarm_key(self.prefix, "alert", fp))
            groups.setdefault(found, []).append(i)
        return [g[i : i + CHUNK] for g in groups.values() for i in range(0, len(g), CHUNK)]

    def apply(self, events: Sequence[dict[str, Any]]) -> list[Applied]:
        """Apply normalised events (with ``record_id``) in order, in one round trip."""
        if not events:
            return []
        prefix = self.prefix
        fingerprints = [event["fingerprint"] for event in events]
        latest: dict[str, int] = {}
        for fp, event in zip(fingerprints, events, strict=True):
            t = event["time"]
            if t > latest.get(fp, t - 1):
                latest[fp] = t
        calls = self._calls(fingerprints)
        with translated("apply alarm events"):
            pipe = self.client.pipeline(transaction=False)
            for call in calls:
                alerts: dict[str, int] = {}  # fingerprint → its alert's position in KEYS
                markers: list[str] = []
                rows: list[list[Any]] = []
                for i in call:
                    event, fp = events[i], fingerprints[i]
                    record_id = event["record_id"]
                    position = alerts.setdefault(fp, len(alerts) + 1)
                    applied = alarm_key(prefix, "applied", fp)
                    markers += (f"{applied}:r:{record_id}", f"{applied}:e:{event['event_id']}")
                    meta = json_bytes({name: event.get(name) for name in _FIELDS}).decode()
                    rows.append([position, str(event["time"]), str(event["severity"]),
                                 event["status"], alert_id(fp, record_id), meta])  # fmt: skip
                keys = [alarm_key(prefix, "alert", fp) for fp in alerts]
                args: list[Any] = [self.dedupe_ttl, len(keys), json_bytes(rows)]
                run(self._apply, keys + markers, args, pipe)
            # The index only ever moves forward; the sweep re-checks under the script. It is
            # written after the events are applied (see the module): on a cluster, whose
            # pipeline sends to its nodes at once, in a round trip of its own.
            index = alarm_key(prefix, "alerts")
            if not self.per_slot:
                pipe.zadd(index, latest, gt=True)
            if self.replicas:
                pipe.wait(self.replicas, self.replica_timeout_ms)
            replies = pipe.execute()
            if self.per_slot:
                self.client.zadd(index, latest, gt=True)
        if self.replicas and replies[-1] < self.replicas:
            raise RecoverableError(
                f"alarm events applied, but only {replies[-1]} of {self.replicas} replicas had "
                f"them within {self.replica_timeout_ms} ms (a failover could lose them): retry"
            )
        placed: dict[int, Applied] = {}
        for call, reply in zip(calls, replies, strict=False):  # a last reply is ZADD's
            for i, element in zip(call, read_elements(reply), strict=True):
                placed[i] = as_applied(events[i]["record_id"], element)
        return [placed[i] for i in range(len(events))]

    def close_quiet(self, cutoff_ms: int, limit: int = 1000) -> list[dict[str, Any]]:
        """Close alerts with no event since ``cutoff_ms`` (as of their last event: a later
        event opens a new alert); returns them, with those closed by an earlier call whose
        close was not yet published. Call ``forget_closed`` once the closes are published."""
        index = alarm_key(self.prefix, "alerts")
        with translated("close quiet alerts"):
            found: Any = self.client.zrangebyscore(
                index, "-inf", f"({cutoff_ms}", start=0, num=limit
            )
            quiet = [text(raw) for raw in found]
            pipe = self.client.pipeline(transaction=False)
            for fp in quiet:
                run(self._close_quiet, [alarm_key(self.prefix, "alert", fp)], [cutoff_ms], pipe)
            replies = pipe.execute() if quiet else []
            gone = [fp for fp, reply in zip(quiet, replies, strict=True) if reply == b"gone"]
            if gone:  # no alert, or closed and published: nothing left for the sweep
                self.client.zrem(index, *gone)
                self._reindex(gone)
        return [alert_of(json.loads(reply)[1]) for reply in replies if reply and reply != b"gone"]

    def forget_closed(self, alerts: Sequence[dict[str, Any]], cutoff_ms: int) -> None:
        """Drop quiet-closed alerts from the index of open alerts, once published."""
        if not alerts:
            return
        args = [cutoff_ms, *(a["fingerprint"] for a in alerts)]
        with translated("update the index of open alerts"):
            dropped = self._forget(keys=[alarm_key(self.prefix, "alerts")], args=args)
            if dropped:
                sent = {a["fingerprint"]: f"{a['id']}:{a['version']}".encode() for a in alerts}
                self._reindex([text(fp) for fp in dropped], sent)

    def _reindex(self, fingerprints: Sequence[str], sent: Mapping[str, bytes] = _NONE) -> None:
        """Put back into the index the fingerprints just taken out whose alert is open after
        all (an event opened it meanwhile), or closed by a sweep and not published (unless
        ``sent`` holds its ``id:version``: the caller published that close)."""
        pipe = self.client.pipeline(transaction=False)
        fields = ["status", "last_time", "closed_by", "close_published", "id", "version"]
        for fp in fingerprints:
            pipe.hmget(alarm_key(self.prefix, "alert", fp), fields)
        back: dict[str, int] = {}
        for fp, row in zip(fingerprints, pipe.execute(), strict=True):
            status, last_time, by, published, ident, version = row
            if status is None:
                continue
            done = published == b"1" or sent.get(fp) == b"%s:%s" % (ident, version)
            if status != b"CLOSED" or (by == b"quiet" and not done):
                back[fp] = int(last_time)
        if back:
            self.client.zadd(alarm_key(self.prefix, "alerts"), back, gt=True)

    def get(self, fingerprint: str) -> dict[str, Any] | None:
        with translated("read an alert"):
            raw = self.client.hgetall(alarm_key(self.prefix, "alert", fingerprint))
        if not raw:
            return None
        return alert_of([text(x) for pair in raw.items() for x in pair])

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
        markers = [self._published_key(change) for change in changes]
        calls = self._calls([c["alert"]["fingerprint"] for c in changes])
        with translated("claim alert changes"):
            pipe = self.client.pipeline(transaction=False)
            for call in calls:
                run(self._claim, [markers[i] for i in call], [self.dedupe_ttl], pipe)
            replies = pipe.execute()
        states = [""] * len(changes)
        for call, reply in zip(calls, replies, strict=True):
            for i, letter in zip(call, text(reply), strict=True):
                states[i] = _CLAIMED[letter]
        send = [c for c, state in zip(changes, states, strict=True) if state != "published"]
        again = {
            c["change_id"] for c, state in zip(changes, states, strict=True) if state == "claimed"
        }
        return send, again

    def release(self, changes: Sequence[dict[str, Any]]) -> None:
        """Give back the claims of changes that were never sent (a later run sends them as
        new, not as possible duplicates)."""
        if not changes:
            return
        markers = [self._published_key(change) for change in changes]
        calls = self._calls([c["alert"]["fingerprint"] for c in changes])
        with translated("release alert change claims"):
            pipe = self.client.pipeline(transaction=False)
            for call in calls:
                run(self._release, [markers[i] for i in call], [], pipe)
            pipe.execute()

    def mark_published(self, changes: Sequence[dict[str, Any]]) -> None:
        """Remember the changes as sent; a quiet close is also marked on its alert, so the
        sweep stops returning it and a new alert opening over it need not carry it."""
        if not changes:
            return
        calls = self._calls([c["alert"]["fingerprint"] for c in changes])
        with translated("mark alert changes published"):
            pipe = self.client.pipeline(transaction=False)
            for call in calls:
                keys = [self._published_key(changes[i]) for i in call]
                args: list[Any] = [self.dedupe_ttl, len(keys)]
                for i in call:
                    alert = changes[i]["alert"]
                    if alert.get("closed_by") == "quiet":
                        keys.append(alarm_key(self.prefix, "alert", alert["fingerprint"]))
                        args += (alert["id"], alert["version"])
                run(self._mark, keys, args, pipe)
            pipe.execute()

    def _published_key(self, change: dict[str, Any]) -> str:
        fp = change["alert"]["fingerprint"]
        return alarm_key(self.prefix, "applied", fp, "p:" + change["change_id"])

    def count(self, outcomes: Iterable[str], extra: dict[str, int] | None = None) -> None:
        """Add outcomes (and other counters) to the pipeline's statistics hash, and to the
        worker's metrics once Redis took them (``workers.metrics.record.alarm_counts``)."""
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
        record.alarm_counts(totals)

    def stats(self) -> dict[str, int]:
        with translated("read alarm statistics"):
            raw = self.client.hgetall(alarm_key(self.prefix, "alarm-stats"))
        return {text(k): int(v) for k, v in raw.items()}
