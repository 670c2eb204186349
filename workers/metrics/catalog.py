"""Every metric the package exports: name, type, labels and help, in one place.

The worker's metrics and the lag exporter create their metrics from these entries, and the
Grafana dashboard in ``docker/`` queries only names listed here (a test checks both), so a name
cannot drift between the code, the dashboard and the README.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class Metric:
    name: str  # without the ``_total`` a counter's sample gets
    kind: Kind
    labels: tuple[str, ...]
    help: str
    source: Literal["worker", "exporter"]


def _worker(name: str, kind: Kind, labels: tuple[str, ...], text: str) -> Metric:
    return Metric(name, kind, labels, text, "worker")


def _exporter(name: str, kind: Kind, labels: tuple[str, ...], text: str) -> Metric:
    return Metric(name, kind, labels, text, "exporter")


P = ("pipeline",)
PTP = ("pipeline", "topic", "partition")

METRICS: tuple[Metric, ...] = (
    # -- the pull (worker processes) ---------------------------------------------------------
    _worker("workers_records_pulled", "counter", P, "Records read from Kafka"),
    _worker("workers_bytes_pulled", "counter", P, "Bytes of keys and values read from Kafka"),
    _worker("workers_records_delivered", "counter", P, "Records handed off to the first stage"),
    _worker("workers_batches", "counter", P, "Batches handed off to the first stage"),
    _worker(
        "workers_records_dead_lettered",
        "counter",
        ("pipeline", "stage", "reason"),
        "Records sent to the dead-letter topic, by stage (pull or a stage's name) and reason class",
    ),
    _worker(
        "workers_batches_redriven", "counter", P, "Batches handed off again after their due time"
    ),
    _worker(
        "workers_pull_cycles",
        "counter",
        ("pipeline", "stopped_by"),
        "Pull cycles, by why they ended",
    ),
    _worker("workers_pull_cycle_seconds", "histogram", P, "Duration of one pull cycle"),
    _worker(
        "workers_handoff_seconds", "histogram", P, "Recording a batch in the ledger and sending it"
    ),
    _worker(
        "workers_commit_seconds",
        "histogram",
        P,
        "Finishing a batch in the ledger (the offset commit)",
    ),
    _worker(
        "workers_record_age_seconds",
        "histogram",
        P,
        "Age of a batch's oldest record (its Kafka timestamp) when the batch is finished",
    ),
    _worker(
        "workers_commit_refusals",
        "counter",
        ("pipeline", "reason"),
        "Commits refused by the fence: lease_lost or reset",
    ),
    _worker("workers_leases_held", "gauge", P, "Partition leases held by this host's processes"),
    # -- the reference alarm pipeline --------------------------------------------------------
    _worker(
        "workers_alerts",
        "counter",
        ("outcome",),
        "Alert state changes: opened, updated, recovered, closed",
    ),
    _worker("workers_alarm_duplicates_skipped", "counter", (), "Events already applied, skipped"),
    _worker(
        "workers_alarm_changes_published",
        "counter",
        (),
        "Alert changes written to the output topic",
    ),
    _worker("workers_alarm_publish_failures", "counter", (), "Alert changes whose publish failed"),
    # -- the lag exporter (``workers exporter``, and the worker's endpoint when asked) --------
    _exporter(
        "workers_lag_records", "gauge", PTP, "Records between the committed offset and the log end"
    ),
    _exporter(
        "workers_lag_seconds", "gauge", PTP, "Age of the oldest unread record (0 when caught up)"
    ),
    _exporter("workers_committed_offset", "gauge", PTP, "The pipeline's committed offset in Redis"),
    _exporter("workers_log_end_offset", "gauge", PTP, "The partition's log end offset"),
    _exporter(
        "workers_queue_backlog",
        "gauge",
        ("pipeline", "queue"),
        "Messages waiting in the first stage's queue",
    ),
    _exporter(
        "workers_pipeline_up",
        "gauge",
        P,
        "1 when the last collection of the pipeline's lag succeeded",
    ),
)

BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}


def sample_names(metric: Metric) -> tuple[str, ...]:
    """The names its samples carry in the text format."""
    if metric.kind == "counter":
        return (f"{metric.name}_total",)
    if metric.kind == "histogram":
        return tuple(f"{metric.name}_{s}" for s in ("bucket", "sum", "count"))
    return (metric.name,)
