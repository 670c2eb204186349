"""What a scenario's real Celery processes (``workers.testing.cluster``) use and do: their pool
processes, memory and CPU, and the alarm pipeline's progress read from its counters in Redis.

Workers run ``celery -A workers.app`` with the benchmark's config module (``bench.celeryconfig``),
as a deployment would.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from workers.alarms.state import OUTCOMES
from workers.testing import CeleryCommand, wait_until
from workers.testing.cluster import Cluster

__all__ = ["Cluster", "CpuMeter", "Progress", "pool_pids", "rss_kib", "wait"]

CHANGES = ("opened", "updated", "recovered", "closed")


def pool_pids(worker: CeleryCommand) -> list[int]:
    """The worker's main process and its pool processes."""
    pid = worker.pid
    if pid is None:
        return []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *map(int, children)]


def rss_kib(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of a process in KiB, from /proc; (0, 0) once it is gone."""
    found = {"VmRSS": 0, "VmHWM": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in found:
                found[name] = int(rest.split()[0])
    except OSError:
        pass
    return found["VmRSS"], found["VmHWM"]


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values[:8]) - idle) / _TICK, sum(values[:8]) / _TICK


class CpuMeter:
    """CPU seconds by role (worker pool, worker main, beat, Redis, broker) between two reads."""

    def __init__(self, roles: Callable[[], dict[str, list[int]]]) -> None:
        self.roles = roles
        self.marks: list[tuple[float, dict[str, float], tuple[float, float]]] = []

    def mark(self) -> None:
        used = {role: sum(map(cpu_seconds, pids)) for role, pids in self.roles().items()}
        self.marks.append((time.monotonic(), used, machine_busy()))

    def between(self, events: int) -> dict[str, Any]:
        """Microseconds of CPU per event by role, and cores busy, between the first two marks."""
        (t0, used0, busy0), (t1, used1, busy1) = self.marks[:2]
        seconds = t1 - t0
        per_event = {r: round((used1[r] - used0.get(r, 0.0)) * 1e6 / events) for r in used1}
        busy = (busy1[0] - busy0[0]) / seconds
        return {"cpu_us_per_event": per_event, "machine_cores_busy": round(busy, 2),
                "cores": os.cpu_count()}  # fmt: skip


class Progress:
    """The alarm pipeline's counters of one key prefix: events applied, changes published."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.key = f"{prefix}:alarm-stats"

    def read(self) -> tuple[int, int, int]:
        """(events built, changes made, changes published)."""
        raw: dict[bytes, bytes] = self.client.hgetall(self.key)  # type: ignore[assignment]
        stats = {k.decode(): int(v) for k, v in raw.items()}
        built = sum(stats.get(name, 0) for name in OUTCOMES)
        changes = sum(stats.get(name, 0) for name in CHANGES)
        return built, changes, stats.get("published", 0)


def wait(
    condition: Callable[[], bool], timeout: float, what: str, cluster: Cluster | None = None
) -> None:
    wait_until(condition, timeout, what, check=None if cluster is None else cluster.check)
