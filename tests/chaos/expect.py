"""What the alert state must be, from the input topic alone, by the reference model
(``tests/alarm_model.py``). ``workload`` makes every incident's final state independent of the
order of application except for where its terminal event lands, so the model is run for each
place (first, after the first ABNORMAL, last) and any of those states is correct."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.alarm_model import AlertModel, state_of
from tests.chaos.truth import Record
from workers.alarms.events import InvalidEvent, parse_event

COMPARED = ("status", "count", "severity", "first_time", "last_time", "last_change", "version",
            "closed_by")  # fmt: skip


@dataclass
class Expected:
    """One fingerprint: its valid records (ids) and the states the alert may end in."""

    fingerprint: str
    records: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)

    @property
    def abnormal(self) -> int:
        """Distinct ABNORMAL events: the alert's ``count`` whatever the order."""
        return len({e["event_id"] for e in self.events if e["status"] == "ABNORMAL"})

    @property
    def max_version(self) -> int:
        return max((s["version"] for s in self.states), default=0)


@dataclass
class Expectation:
    by_fingerprint: dict[str, Expected]
    invalid: list[str]  # record ids that parse must dead-letter
    fingerprint_of: dict[str, str]  # record id → fingerprint, for valid records


def record_id(topic: str, record: Record, cluster: str = "test") -> str:
    return f"{cluster}/{topic}/{record.partition}/{record.offset}"


def expect(topic: str, records: Iterable[Record], max_future_ms: int = 300_000) -> Expectation:
    now_ms = int(time.time() * 1000)
    by_fp: dict[str, Expected] = {}
    invalid: list[str] = []
    fingerprint_of: dict[str, str] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        rid = record_id(topic, record)
        try:
            value = json.loads(record.value or b"null")
            event = parse_event(value, now_ms, max_future_ms)
        except (InvalidEvent, ValueError):
            invalid.append(rid)
            continue
        event["record_id"] = rid
        fp = event["fingerprint"]
        entry = by_fp.setdefault(fp, Expected(fp))
        entry.records.append(rid)
        entry.events.append(event)
        fingerprint_of[rid] = fp
    for entry in by_fp.values():
        entry.states = _states(entry)
    return Expectation(by_fp, invalid, fingerprint_of)


def _states(entry: Expected) -> list[dict[str, Any]]:
    abnormal = [e for e in entry.events if e["status"] == "ABNORMAL"]
    terminal = [e for e in entry.events if e["status"] != "ABNORMAL"]
    orders = [abnormal + terminal, terminal + abnormal, abnormal[:1] + terminal + abnormal[1:]]
    states: list[dict[str, Any]] = []
    for order in orders:
        model = AlertModel()
        for event in order:
            model.apply(event)
        alert = model.states().get(entry.fingerprint)
        state = None if alert is None else {k: state_of(alert)[k] for k in COMPARED}
        if state is not None and state not in states:
            states.append(state)
    return states


def matches(entry: Expected, alert: dict[str, Any] | None) -> bool:
    if alert is None:
        return not entry.states
    return {k: alert.get(k) for k in COMPARED} in entry.states
