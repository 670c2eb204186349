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
from redis.cluster import RedisCluster
from redis.crc import key_slot

from workers.alarms.lua import APPLY, CLAIM, CLOSE_QUIET, FORGET, MARK, RELEASE
from workers.kafka.codecs import fast_json
from workers.metrics import record
from workers.state.keys import alarm_key
from workers.state.redis_errors import translated

OUTCOMES = ("duplicate", "replayed", "stale", "ignored", "opened", "updated", "recovered", "closed")
_INT_FIELDS = ("count", "severity", "first_time", "last_time", "last_change", "version")

_FIELDS = ("alert_name", "fingerprint", "dimensions", "target", "description", "metric", "cluster",
           "strategy_id", "bk_biz_id")  # fmt: skip

# Items per script call. One call holds Redis for its whole run (about 2 ms per 100 events
# here): chunks bound that pause for other clients, and more calls per round trip cost next
# to nothing (one call per 500 events saved no measurable CPU).
CHUNK = 100

_CLAIMED = {"n": "new", "p": "published", "c": "claimed"}


def json_bytes(value: Any) -> bytes:
    """Compact JSON of ``value`` as UTF-8: orjson's when it is installed and takes the value,
    else the standard library's (integers beyond 64 bits, lone surrogates: never refused)."""
    if fast_json is not None:
        try:
            data: bytes = fast_json.dumps(value)
            return data
        except TypeError:  # orjson.JSONEncodeError
            pass
    return json.dumps(value, separators=(",", ":")).encode()


def _loads(raw: bytes) -> Any:
    """A script's JSON reply: orjson's reading, unless it refuses it (see ``_elements``)."""
    if fast_json is not None:
        try:
            return fast_json.loads(raw)
        except ValueError:  # orjson.JSONDecodeError: lone surrogates, or no JSON at all
            pass
    return json.loads(raw)


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
    """Alert state of one key prefix on ``client``. ``per_slot``: group the items of a batch
    by hash slot, one script call per slot, as Redis Cluster needs (the default on a cluster
    client); otherwise a call takes up to ``CHUNK`` items of any fingerprints."""

    def __init__(
        self, client: redis.Redis, prefix: str, dedupe_ttl: int, per_slot: bool | None = None
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.dedupe_ttl = dedupe_ttl
        self.per_slot = isinstance(client, RedisCluster) if per_slot is None else per_slot
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
            slot = slots.get(fp)
            if slot is None:
                slot = slots[fp] = key_slot(alarm_key(self.prefix, "alert", fp).encode())
            groups.setdefault(slot, []).append(i)
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
                self._apply(keys=keys + markers, args=args, client=pipe)
            # The index only ever moves forward; the sweep re-checks under the script.
            pipe.zadd(alarm_key(prefix, "alerts"), latest, gt=True)
            replies = pipe.execute()
        placed: dict[int, Applied] = {}
        for call, reply in zip(calls, replies, strict=False):  # the last reply is ZADD's
            for i, element in zip(call, _elements(reply), strict=True):
                placed[i] = _applied(events[i]["record_id"], element)
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
        markers = [self._published_key(change) for change in changes]
        calls = self._calls([c["alert"]["fingerprint"] for c in changes])
        with translated("claim alert changes"):
            pipe = self.client.pipeline(transaction=False)
            for call in calls:
                self._claim(keys=[markers[i] for i in call], args=[self.dedupe_ttl], client=pipe)
            replies = pipe.execute()
        states = [""] * len(changes)
        for call, reply in zip(calls, replies, strict=True):
            for i, letter in zip(call, _text(reply), strict=True):
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
                self._release(keys=[markers[i] for i in call], client=pipe)
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
                self._mark(keys=keys, args=args, client=pipe)
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
        return {_text(k): int(v) for k, v in raw.items()}


def _elements(reply: bytes) -> list[Any]:
    """The per-event elements of an ``APPLY`` reply. orjson reads an integer beyond 64 bits
    (which only the standard library's encoder could have written into an alert's meta) as a
    float, and no alert field is a float: then the standard library reads the reply again."""
    elements: list[Any] = _loads(reply)
    if fast_json is not None:
        for element in elements:
            for body in element[1:]:
                if type(body[1]) is dict and float in map(type, body[1].values()):
                    return list(json.loads(reply))
    return elements


def _applied(record_id: str, element: list[Any]) -> Applied:
    """An ``APPLY`` reply element as ``Applied``; a replayed record's alert may come from a
    marker kept by an earlier version (the hash as HGETALL lists it)."""
    if len(element) == 1:
        return Applied(record_id, element[0], None)
    change, alert = element[1]
    close = _as_alert(element[2][1]) if len(element) > 2 else None
    return Applied(record_id, element[0], _as_alert(alert), change, close)


def _as_alert(body: dict[str, Any] | list[str]) -> dict[str, Any]:
    return body if isinstance(body, dict) else _alert(body)


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
