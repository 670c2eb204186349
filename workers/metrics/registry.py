"""The worker's metrics as ``prometheus_client`` objects, made from the catalogue's worker
entries (``workers.metrics.catalog``): nothing here names a metric of its own.

Made once per worker, after its multiprocess directory is set up (``workers.metrics.process``):
``prometheus_client`` gives a metric file-backed values only if ``PROMETHEUS_MULTIPROC_DIR``
was set when the value was made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from workers.metrics.catalog import METRICS, Metric

# Seconds. A hand-off and a commit are Redis and broker round trips (about a millisecond on
# one host); a cycle is bounded by the pipeline's max_seconds (at most 300); a record's age
# runs from milliseconds (long-lived consumers) to hours (a backlog after an outage).
_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
BUCKETS: dict[str, tuple[float, ...]] = {
    "workers_pull_cycle_seconds": (
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    ),
    "workers_handoff_seconds": _FAST,
    "workers_commit_seconds": _FAST,
    "workers_record_age_seconds": (
        0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0,
        86400.0,
    ),
}  # fmt: skip


def worker_entries() -> tuple[Metric, ...]:
    """The catalogue's entries that the worker processes record."""
    return tuple(m for m in METRICS if m.source == "worker")


@dataclass(frozen=True, slots=True)
class WorkerMetrics:
    """The worker's metrics by catalogue name (``prometheus_client`` objects)."""

    by_name: dict[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.by_name[name]


def _make(metric: Metric, registry: CollectorRegistry | None) -> Any:
    common: dict[str, Any] = {"labelnames": metric.labels, "registry": registry}
    if metric.kind == "counter":
        return Counter(metric.name, metric.help, **common)
    if metric.kind == "histogram":
        return Histogram(metric.name, metric.help, buckets=BUCKETS[metric.name], **common)
    # Gauges hold what live processes hold now: a dead process's value leaves the sum.
    return Gauge(metric.name, metric.help, multiprocess_mode="livesum", **common)


def build(registry: CollectorRegistry | None = None) -> WorkerMetrics:
    """Make every worker metric of the catalogue, registered in ``registry`` (None: in none;
    a multiprocess scrape reads the processes' files, not a registry)."""
    return WorkerMetrics({m.name: _make(m, registry) for m in worker_entries()})
