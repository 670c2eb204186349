"""Recording: cheap calls the pull, the stages and the alarm pipeline make per cycle or per
batch (never per record). Until ``enable`` (a worker with ``workers_metrics_port``) each call
returns at once; a failure to record is logged, never raised into the pipeline.

Label values stay bounded whatever the input: a pipeline name not configured here is
``unknown``, a dead letter's reason is its class (``workers.metrics.reasons``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from workers.metrics.reasons import reason_class

if TYPE_CHECKING:  # neither imports prometheus_client here: the hot paths import this module
    from workers.metrics.registry import WorkerMetrics
    from workers.pulling.cycle import Summary

logger = logging.getLogger(__name__)

# The Celery message header that carries a batch's oldest Kafka timestamp (ms) to its last
# stage, for the record age; sent only by a worker configured with metrics.
OLDEST_HEADER = "workers_oldest_ms"
UNKNOWN = "unknown"
# Alert outcomes counted as state changes, and those that skipped an event already applied.
CHANGES = ("opened", "updated", "recovered", "closed")
SKIPPED = ("duplicate", "replayed")
_TIMESTAMP = itemgetter("timestamp")


@dataclass(frozen=True, slots=True)
class _On:
    metrics: WorkerMetrics
    pipelines: frozenset[str]

    def pipeline(self, name: str) -> str:
        return name if name in self.pipelines else UNKNOWN


_on: _On | None = None
_warned = False


def enable(metrics: WorkerMetrics, pipelines: Iterable[str]) -> None:
    """Record into ``metrics`` from now on; ``pipelines`` are the names a label may take."""
    global _on, _warned
    _on = _On(metrics, frozenset(pipelines))
    _warned = False


def disable() -> None:
    global _on
    _on = None


def enabled() -> bool:
    return _on is not None


def _failed(exc: Exception) -> None:
    """A metric that cannot be written (a full disk under the multiprocess directory) costs
    the metric, not the batch: warned once per process."""
    global _warned
    if not _warned:
        _warned = True
        logger.warning("metrics: cannot record (%r); recording goes on where it can", exc)


def oldest_ms(batch: Sequence[Mapping[str, Any]]) -> int | None:
    """The oldest Kafka timestamp (ms) of a batch's messages; None when none has one."""
    try:  # every message has one (the decoder's messages do): the quick way
        low = min(map(_TIMESTAMP, batch), default=None)
        if type(low) is int and low >= 0:
            return low
    except (KeyError, TypeError):  # a message without one, or of another type
        pass
    stamps = [t for m in batch if type(t := m.get("timestamp")) is int and t >= 0]
    return min(stamps) if stamps else None


def pull_cycle(summary: Summary) -> None:
    """One pull cycle's counts, its duration and why it ended; a cycle the fence stopped is
    a commit refusal, and records dead-lettered by re-drives (they kept killing their
    worker) count as dead letters of ``pull``."""
    on = _on
    if on is None:
        return
    try:
        m, p = on.metrics, on.pipeline(summary.pipeline)
        m["workers_records_pulled"].labels(p).inc(summary.records)
        m["workers_bytes_pulled"].labels(p).inc(summary.bytes)
        m["workers_records_delivered"].labels(p).inc(summary.delivered)
        m["workers_batches"].labels(p).inc(summary.batches)
        m["workers_batches_redriven"].labels(p).inc(summary.redriven)
        m["workers_pull_cycles"].labels(p, summary.stopped_by or "none").inc()
        m["workers_pull_cycle_seconds"].labels(p).observe(summary.seconds)
        if summary.stopped_by in ("lease_lost", "reset"):
            m["workers_commit_refusals"].labels(p, summary.stopped_by).inc()
        if summary.abandoned:
            m["workers_records_dead_lettered"].labels(p, "pull", "crashed").inc(summary.abandoned)
    except Exception as exc:  # noqa: BLE001 - see _failed
        _failed(exc)


def dead_lettered(pipeline: str, stage: str, reasons: Iterable[str]) -> None:
    """Dead letters the broker confirmed, sent by ``stage`` (``pull`` or a stage's name)."""
    on = _on
    if on is None:
        return
    try:
        classes: dict[str, int] = {}
        for reason in reasons:
            cls = reason_class(reason)
            classes[cls] = classes.get(cls, 0) + 1
        family = on.metrics["workers_records_dead_lettered"]
        for cls, n in classes.items():
            family.labels(on.pipeline(pipeline), stage, cls).inc(n)
    except Exception as exc:  # noqa: BLE001 - see _failed
        _failed(exc)


def handed_off(pipeline: str, seconds: float) -> None:
    """One batch recorded in the ledger and accepted by the Celery broker."""
    on = _on
    if on is None:
        return
    try:
        on.metrics["workers_handoff_seconds"].labels(on.pipeline(pipeline)).observe(seconds)
    except Exception as exc:  # noqa: BLE001 - see _failed
        _failed(exc)


def finished(pipeline: str, seconds: float, oldest: Any, now: float | None = None) -> None:
    """A batch finished in the ledger by its last stage, in ``seconds``; ``oldest`` is its
    oldest Kafka timestamp in ms (from the message header: anything but a non-negative
    integer is ignored). A timestamp in the future counts as age 0."""
    on = _on
    if on is None:
        return
    try:
        p = on.pipeline(pipeline)
        on.metrics["workers_commit_seconds"].labels(p).observe(seconds)
        if type(oldest) is int and oldest >= 0:
            age = (time.time() if now is None else now) - oldest / 1000
            on.metrics["workers_record_age_seconds"].labels(p).observe(max(0.0, age))
    except Exception as exc:  # noqa: BLE001 - see _failed
        _failed(exc)


def leases(pipeline: str, delta: int) -> None:
    """This process holds ``delta`` more (or fewer) leases of the pipeline's partitions."""
    on = _on
    if on is None or not delta:
        return
    try:
        on.metrics["workers_leases_held"].labels(on.pipeline(pipeline)).inc(delta)
    except Exception as exc:  # noqa: BLE001 - see _failed
        _failed(exc)


def alarm_counts(totals: Mapping[str, int]) -> None:
    """What the alarm pipeline added to its statistics in Redis (``AlertStore.count``):
    alert outcomes, ``quiet_closed`` (closes of the sweep, published), ``published``."""
    on = _on
    if on is None:
        return
    try:
        m = on.metrics
        changes = {outcome: totals.get(outcome, 0) for outcome in CHANGES}
        changes["closed"] += totals.get("quiet_closed", 0)
        for outcome, n in changes.items():
            if n:
                m["workers_alerts"].labels(outcome).inc(n)
        skipped = sum(totals.get(name, 0) for name in SKIPPED)
        if skipped:
            m["workers_alarm_duplicates_skipped"].inc(skipped)
        if totals.get("published"):
            m["workers_alarm_changes_published"].inc(totals["published"])
    except Exception as exc:  # noqa: BLE001 - see _failed
        _failed(exc)


def publish_failed(changes: int) -> None:
    """Alert changes the output topic did not confirm (their stage retries them)."""
    on = _on
    if on is None or changes <= 0:
        return
    try:
        on.metrics["workers_alarm_publish_failures"].inc(changes)
    except Exception as exc:  # noqa: BLE001 - see _failed
        _failed(exc)
