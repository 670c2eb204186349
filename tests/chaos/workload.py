"""Realistic alarm events whose final alert state does not depend on the order of application.

Concurrent workers apply batches in any order, and a crash re-applies them later; so each
*incident* gets its own fingerprint (an ``episode`` dimension) and all its events carry the
incident's start time. Then no event is ever stale, an alert's ``count`` is exactly the number
of its distinct ABNORMAL events whatever the order, and only the terminal event's place
matters (``expect`` enumerates those places). Incidents: ABNORMAL events then RECOVERED, or
ABNORMAL events left open, or one ABNORMAL and a CLOSED. Plus re-sent events (same event id,
new record) and a few invalid ones, as in ``workers.demo.events``.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from workers.demo.events import ALERTS, REGIONS, SERVICES

EVENT, DUPLICATE, INVALID = "event", "duplicate", "invalid"


@dataclass
class _Incident:
    episode: str
    service: str
    host: str
    region: str
    alert: tuple[str, str, int, str]
    time: float  # every event of the incident carries it (see the module docstring)
    abnormal: int  # ABNORMAL events still to come
    terminal: str | None  # RECOVERED, CLOSED, or None: the alert stays open


@dataclass
class Workload:
    """An endless, seeded stream of ``(value, key, kind)``; ``kind`` is ``EVENT``,
    ``DUPLICATE`` (an earlier value sent again) or ``INVALID`` (dead-lettered by ``parse``)."""

    seed: int
    clock: Callable[[], float] = time.time
    duplicates: float = 0.02
    invalid: float = 0.005
    active_target: int = 24
    _rng: random.Random = field(init=False)
    _active: list[_Incident] = field(default_factory=list)
    _recent: list[tuple[bytes, bytes]] = field(default_factory=list)
    _episodes: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def next(self) -> tuple[bytes, bytes, str]:
        rng = self._rng
        roll = rng.random()
        if roll < self.invalid:
            return self._invalid()
        if roll < self.invalid + self.duplicates and self._recent:
            value, key = rng.choice(self._recent)
            return value, key, DUPLICATE
        if len(self._active) < self.active_target or rng.random() < 0.02:
            self._open()
        incident = rng.choice(self._active)
        if incident.abnormal > 0:
            incident.abnormal -= 1
            status = "ABNORMAL"
            if incident.abnormal == 0 and incident.terminal is None:
                self._active.remove(incident)
        else:
            assert incident.terminal is not None
            status = incident.terminal
            self._active.remove(incident)
        value, key = self._event(incident, status)
        self._recent = (self._recent + [(value, key)])[-50:]
        return value, key, EVENT

    def _open(self) -> None:
        rng = self._rng
        self._episodes += 1
        service = rng.choice(list(SERVICES))
        roll = rng.random()
        if roll < 0.55:
            terminal, abnormal = "RECOVERED", rng.randint(1, 20)
        elif roll < 0.85:
            terminal, abnormal = None, rng.randint(1, 30)
        else:  # closed by an operator: one ABNORMAL (more would make the count order-dependent)
            terminal, abnormal = "CLOSED", 1
        self._active.append(
            _Incident(
                episode=f"ep-{self.seed}-{self._episodes}",
                service=service,
                host=rng.choice(SERVICES[service]),
                region=rng.choice(REGIONS),
                alert=rng.choice(ALERTS),
                time=round(self.clock(), 3),
                abnormal=abnormal,
                terminal=terminal,
            )  # fmt: skip
        )

    def _event(self, incident: _Incident, status: str) -> tuple[bytes, bytes]:
        name, metric, severity, text = incident.alert
        if status == "ABNORMAL" and severity > 1 and self._rng.random() < 0.2:
            severity -= 1  # escalation: the alert keeps the most severe it saw
        event = {
            "event_id": uuid.UUID(int=self._rng.getrandbits(128)).hex,
            "alert_name": name,
            "time": incident.time,
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
                "episode": incident.episode,
            },
        }
        key = f"{incident.service}/{incident.host}".encode()
        return json.dumps(event, separators=(",", ":")).encode(), key

    def _invalid(self) -> tuple[bytes, bytes, str]:
        event: dict[str, object] = {
            "event_id": uuid.UUID(int=self._rng.getrandbits(128)).hex,
            "alert_name": "cpu.high",
            "time": round(self.clock(), 3),
            "severity": 7 if self._rng.random() < 0.5 else 2,
        }
        if event["severity"] == 2:
            del event["alert_name"]
        return json.dumps(event).encode(), b"invalid", INVALID
