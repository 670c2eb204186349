"""An in-memory reference model of the alert rules in ``workers/alarms/state.py``'s docstring.

Plain Python written from the documented rules, not from the Lua: tests apply the same events
to it and to ``AlertStore`` and compare outcomes, changes and states.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workers.alarms.state import alert_id

# The alert fields that the rules decide (``closed_by`` is None unless the alert is closed).
STATE_FIELDS = (
    "id", "status", "count", "severity", "first_time", "last_time", "last_change", "version",
    "closed_by",
)  # fmt: skip


def state_of(alert: Mapping[str, Any]) -> dict[str, Any]:
    """The ``STATE_FIELDS`` of an alert as ``AlertStore`` returns it, for comparing."""
    return {name: alert.get(name) for name in STATE_FIELDS}


class AlertModel:
    """Alerts per fingerprint, moved by normalised events (``parse_event`` output plus
    ``record_id``). Where the docstring is silent the model decides, as follows:

    - an event is applied at most once. A record id seen before (for the same fingerprint) is
      ``replayed`` if that first application changed the alert (it reports that change and
      the alert as it was right after it), else a ``duplicate``; an event id seen before
      within the same fingerprint, under a new record id, is a ``duplicate`` (whatever the
      earlier outcome was), and that record is then remembered as one that changed nothing;
    - ``last_time`` is the latest ABNORMAL or RECOVERED time; a CLOSED event only closes;
    - a RECOVERED event for a recovered alert changes nothing (``ignored``);
    - ``version`` counts changes of one fingerprint and continues when a new alert opens;
    - ``close_quiet(cutoff)`` closes an open alert when no event of its fingerprint (whatever
      its outcome) is as recent as the cutoff, as of its last event: ``last_change`` becomes
      its ``last_time``, so a later ABNORMAL event opens a new alert and one not later is
      stale. Cutoffs are meant to be non-decreasing, as a periodic sweep's are.
    """

    def __init__(self) -> None:
        self._alerts: dict[str, dict[str, Any]] = {}
        # (fingerprint, record id) → (change, alert state right after it), or None
        self._records: dict[tuple[str, str], tuple[str, dict[str, Any]] | None] = {}
        self._events: set[tuple[str, str]] = set()
        self._last_seen: dict[str, int] = {}

    def apply(self, event: Mapping[str, Any]) -> str:
        """Apply one event; returns its outcome (one of ``workers.alarms.state.OUTCOMES``)."""
        return self.apply_change(event)[0]

    def apply_change(self, event: Mapping[str, Any]) -> tuple[str, str, dict[str, Any] | None]:
        """Apply one event; returns ``(outcome, change, alert)``: the change it made (the
        original change for ``replayed``, else the outcome if the alert changed, else "") and
        a copy of the alert's ``STATE_FIELDS`` right after that change (None if none)."""
        fp, t = event["fingerprint"], event["time"]
        self._last_seen[fp] = max(t, self._last_seen.get(fp, t))
        record, ident = (fp, event["record_id"]), (fp, event["event_id"])
        if record in self._records:
            earlier = self._records[record]
            if earlier is None:
                return "duplicate", "", None
            return "replayed", earlier[0], dict(earlier[1])
        self._records[record] = None
        if ident in self._events:
            return "duplicate", "", None
        self._events.add(ident)
        outcome = self._move(fp, event)
        alert = self._alerts.get(fp)
        if outcome in ("stale", "ignored") or alert is None:
            return outcome, "", None
        self._records[record] = (outcome, dict(alert))
        return outcome, outcome, dict(alert)

    def _move(self, fp: str, event: Mapping[str, Any]) -> str:
        t, status = event["time"], event["status"]
        alert = self._alerts.get(fp)
        if alert is None or alert["status"] == "CLOSED":
            if alert is not None and t <= alert["last_change"]:
                return "stale"
            if status != "ABNORMAL":
                return "ignored"
            self._alerts[fp] = {
                "id": alert_id(fp, event["record_id"]),
                "status": "ABNORMAL",
                "count": 1,
                "severity": event["severity"],
                "first_time": t,
                "last_time": t,
                "last_change": t,
                "version": (alert["version"] if alert else 0) + 1,
                "closed_by": None,
            }
            return "opened"

        if t < alert["last_change"]:
            return "stale"
        if status == "ABNORMAL":
            alert["count"] += 1
            alert["last_time"] = max(alert["last_time"], t)
            alert["severity"] = min(alert["severity"], event["severity"])
            if alert["status"] == "RECOVERED":
                alert["status"], alert["last_change"] = "ABNORMAL", t
            outcome = "updated"
        elif status == "RECOVERED":
            if alert["status"] == "RECOVERED":
                return "ignored"
            alert["status"], alert["last_change"] = "RECOVERED", t
            alert["last_time"] = max(alert["last_time"], t)
            outcome = "recovered"
        else:
            alert["status"], alert["last_change"], alert["closed_by"] = "CLOSED", t, "event"
            outcome = "closed"
        alert["version"] += 1
        return outcome

    def close_quiet(self, cutoff_ms: int) -> list[str]:
        """Close every open alert with no event since ``cutoff_ms`` (as of its last event);
        their fingerprints, sorted."""
        closed = []
        for fp, alert in sorted(self._alerts.items()):
            if alert["status"] != "CLOSED" and self._last_seen[fp] < cutoff_ms:
                alert["status"], alert["closed_by"] = "CLOSED", "quiet"
                alert["last_change"] = alert["last_time"]
                alert["version"] += 1
                closed.append(fp)
        return closed

    def states(self) -> dict[str, dict[str, Any]]:
        """Fingerprint → a copy of the ``STATE_FIELDS`` of its alert (closed ones included)."""
        return {fp: dict(alert) for fp, alert in self._alerts.items()}
