"""A realistic stream of alarm events for the demo: several services and hosts, incidents
that come in bursts, repeat, recover or go quiet, duplicates, and a few malformed records.

The stream knows what it made: every record is returned with its kind, so the demo can
reconcile what the pipeline did with what it was given.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

SERVICES = {
    "checkout": ["web-1", "web-2", "web-3"],
    "payments": ["pay-1", "pay-2"],
    "search": ["search-1", "search-2", "search-3", "search-4"],
    "orders-db": ["db-primary", "db-replica-1"],
    "cache": ["redis-1", "redis-2"],
}
REGIONS = ("eu-west-1", "us-east-1", "ap-southeast-1")
# alert name, metric, severity (1 is the most severe), description template
ALERTS = (
    ("cpu.high", "cpu_usage_pct", 2, "CPU above 90% for 5 minutes"),
    ("latency.p99", "http_latency_p99_ms", 2, "p99 latency above 800 ms"),
    ("errors.rate", "http_5xx_ratio", 1, "5xx ratio above 2%"),
    ("disk.full", "disk_used_pct", 3, "disk above 85%"),
    ("memory.pressure", "mem_available_pct", 2, "available memory below 10%"),
)

# What a record is: the pipeline's outcome follows from it.
EVENT, DUPLICATE, NOT_JSON, INVALID = "event", "duplicate", "not_json", "invalid"
MALFORMED = (NOT_JSON, INVALID)


@dataclass
class _Incident:
    service: str
    host: str
    alert: tuple[str, str, int, str]
    region: str
    remaining: int  # abnormal events still to come
    recovers: bool  # ends with a RECOVERED event (else goes quiet and is closed by the sweep)


@dataclass
class EventStream:
    """Records (bytes, key, kind) on demand. ``malformed`` and ``duplicates`` are the shares
    of records of those kinds."""

    seed: int | None = None
    clock: Callable[[], float] = time.time
    malformed: float = 0.02
    duplicates: float = 0.03
    _rng: random.Random = field(init=False)
    _active: list[_Incident] = field(default_factory=list)
    _recent: list[tuple[bytes, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def next(self) -> tuple[bytes, bytes | None, str]:
        rng = self._rng
        roll = rng.random()
        if roll < self.malformed:
            return self._malformed()
        if roll < self.malformed + self.duplicates and self._recent:
            value, key = rng.choice(self._recent)
            return value, key, DUPLICATE
        if not self._active or rng.random() < 0.04:
            self._burst()
        incident = rng.choice(self._active)
        if incident.remaining > 0:
            incident.remaining -= 1
            status = "ABNORMAL"
        else:
            self._active.remove(incident)
            # Goes quiet (one last abnormal event, then nothing), or recovers.
            status = "RECOVERED" if incident.recovers else "ABNORMAL"
        value, key = self._event(incident, status)
        self._recent = (self._recent + [(value, key)])[-50:]
        return value, key, EVENT

    def _burst(self) -> None:
        """A service has trouble: one alert on several of its hosts at once."""
        rng = self._rng
        service = rng.choice(list(SERVICES))
        alert = rng.choice(ALERTS)
        hosts = rng.sample(SERVICES[service], rng.randint(1, len(SERVICES[service])))
        region = rng.choice(REGIONS)
        for host in hosts:
            if any(i.host == host and i.alert == alert for i in self._active):
                continue
            remaining = rng.randint(2, 30)
            self._active.append(_Incident(service, host, alert, region, remaining,
                                          rng.random() < 0.7))  # fmt: skip

    def _event(self, incident: _Incident, status: str) -> tuple[bytes, bytes]:
        name, metric, severity, text = incident.alert
        event = {
            "event_id": uuid.UUID(int=self._rng.getrandbits(128)).hex,
            "alert_name": name,
            "time": round(self.clock(), 3),
            "severity": severity,
            "status": status,
            "target": incident.host,
            "metric": metric,
            "description": f"{incident.service} {incident.host}: {text}",
            "strategy_id": 1000 + ALERTS.index(incident.alert),
            "bk_biz_id": 2,
            "dimensions": {
                "service": incident.service,
                "host": incident.host,
                "region": incident.region,
            },  # fmt: skip
        }
        key = f"{incident.service}/{incident.host}".encode()
        return json.dumps(event, separators=(",", ":")).encode(), key

    def _malformed(self) -> tuple[bytes, bytes | None, str]:
        rng = self._rng
        if rng.random() < 0.4:
            value, _ = self._event(rng.choice(self._active) if self._active else
                                   _Incident("cache", "redis-1", ALERTS[0], REGIONS[0], 0, True),
                                   "ABNORMAL")  # fmt: skip
            return value[: len(value) // 2], None, NOT_JSON  # a truncated write
        bad = rng.choice(("severity", "missing", "future"))
        event: dict[str, object] = {
            "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "alert_name": "cpu.high",
            "time": round(self.clock(), 3),
            "severity": 2,
        }
        if bad == "severity":
            event["severity"] = 7
        elif bad == "missing":
            del event["alert_name"]
        else:
            event["time"] = round(self.clock() + 86_400, 3)  # a day ahead: a broken clock
        return json.dumps(event).encode(), None, INVALID
