"""Shared by the ``AlertStore`` tests on a real Redis: events as the parse stage hands them to
build, the full alert they make, and readers of what Redis holds. The ``store`` fixture is in
``tests/integration/conftest.py``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from workers.alarms.events import parse_event
from workers.alarms.state import AlertStore
from workers.state.keys import alarm_key

B = 1_700_000_000_000  # a base event time in epoch milliseconds
TTL = 3600


def event(
    n: int,
    t: int,
    status: str = "ABNORMAL",
    severity: int = 2,
    dims: dict[str, str] | None = None,
    event_id: str | None = None,
    record: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A normalised event as the parse stage hands it to build (record id and cluster set)."""
    raw = {
        "event_id": event_id or f"e{n}",
        "alert_name": "cpu high",
        "severity": severity,
        "status": status,
        "time": t,
        "dimensions": {"host": "h1"} if dims is None else dims,
        **extra,
    }
    parsed = parse_event(raw, now_ms=B + 10**9, max_future_ms=0)
    parsed["record_id"] = f"test/events/0/{n if record is None else record}"
    parsed["cluster"] = "test"
    return parsed


FP = event(0, B)["fingerprint"]


def alert(**state: Any) -> dict[str, Any]:
    """The full alert of fingerprint ``FP`` (host h1) with ``state``."""
    return {
        "alert_name": "cpu high",
        "fingerprint": FP,
        "dimensions": {"host": "h1"},
        "target": None,
        "description": None,
        "metric": None,
        "cluster": "test",
        "strategy_id": None,
        "bk_biz_id": None,
        "closed_by": None,
        **state,
    }


def outcomes(alert_store: AlertStore, events: Sequence[dict[str, Any]]) -> list[str]:
    return [a.outcome for a in alert_store.apply(events)]


def raw_alerts(client: redis.Redis, prefix: str, fps: Sequence[str]) -> list[Any]:
    """The alerts' Redis hashes as stored (``{}`` for none)."""
    return [client.hgetall(alarm_key(prefix, "alert", fp)) for fp in fps]


def index(client: redis.Redis, prefix: str) -> list[Any]:
    return list(client.zrange(alarm_key(prefix, "alerts"), 0, -1, withscores=True))
