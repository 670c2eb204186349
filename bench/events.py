"""Realistic alarm events for the benchmark: about 300 bytes of JSON each, in the documented
schema (README "Events"), keyed by host so that one alert's events stay on one partition.

The stream is deterministic for a seed and cheap to make (a million in a few seconds): incidents
on a fixed set of services and hosts repeat, a few recover, a few events are sent twice.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

from workers.demo.events import ALERTS, REGIONS  # the demo's alerts: one vocabulary

SERVICES = {
    "checkout": ["web-1", "web-2", "web-3", "web-4"],
    "payments": ["pay-1", "pay-2", "pay-3"],
    "search": ["search-1", "search-2", "search-3", "search-4", "search-5"],
    "orders-db": ["db-primary", "db-replica-1", "db-replica-2"],
    "cache": ["redis-1", "redis-2", "redis-3"],
}
HOSTS = [(service, host) for service, hosts in SERVICES.items() for host in hosts]


class Events:
    """``value(i, time_ms)`` → (key, value bytes) of the i-th event of the stream.

    About 94% of events repeat an incident (``updated`` changes), 3% recover it, 3% are an
    exact duplicate of the event before (a ``duplicate`` outcome, no change).
    """

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self._last: tuple[bytes, bytes] | None = None

    def next(self, i: int, time_ms: int) -> tuple[bytes, bytes]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.03 and self._last is not None:
            return self._last
        service, host = HOSTS[rng.randrange(len(HOSTS))]
        name, metric, severity, text = ALERTS[rng.randrange(len(ALERTS))]
        event = {
            "event_id": f"{i:08x}{rng.getrandbits(32):08x}",
            "alert_name": name,
            "time": time_ms,
            "severity": severity,
            "status": "RECOVERED" if roll > 0.97 else "ABNORMAL",
            "dimensions": {"service": service, "host": host, "region": REGIONS[i % 3]},
            "target": host,
            "metric": metric,
            "strategy_id": 1000 + rng.randrange(50),
            "bk_biz_id": 2,
            "description": f"{text} (value {rng.uniform(80, 99):.1f})",
        }
        value = json.dumps(event, separators=(",", ":")).encode()
        self._last = (host.encode(), value)
        return self._last


def stream(n: int, time_ms: int, seed: int = 7) -> Iterator[tuple[bytes, bytes]]:
    """``n`` events, all with the event time ``time_ms``."""
    events = Events(seed)
    for i in range(n):
        yield events.next(i, time_ms)
