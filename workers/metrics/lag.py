"""The lag exporter's collector: per pipeline, topic and partition the committed offset, the
log end and the lag in records and in seconds; the first stage's queue backlog; and whether the
pipeline could be read. Read at scrape time, within a bounded wait (see ``LagCollector``).
A pipeline over many topics is read over the topics it reads at that time: the series of a
topic it no longer reads (deleted, or no longer matching) are gone from the next reading."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client.metrics_core import GaugeMetricFamily
from prometheus_client.registry import Collector

from workers.config.masking import clip
from workers.exceptions import RecoverableError, WorkersError
from workers.metrics.catalog import BY_NAME, METRICS
from workers.metrics.probe import Probe
from workers.ops.overview import ManyStatus, Status, per_topic, pipeline_status
from workers.ops.status import PartitionStatus, Timestamps, first_timestamps
from workers.pulling.handoff import CeleryDispatcher

if TYPE_CHECKING:
    from workers.ops.context import Ops

logger = logging.getLogger(__name__)

T = TypeVar("T")

# How the collector reads a pipeline: its status (``workers.ops.overview.pipeline_status``, with
# the given reader of record timestamps), and its first stage's queue and backlog.
StatusReader = Callable[[str, Timestamps], Status]
BacklogReader = Callable[[str], tuple[str, int]]

EXPORTED = tuple(m for m in METRICS if m.source == "exporter")


def families() -> dict[str, GaugeMetricFamily]:
    """An empty family of every exporter metric, as the catalogue defines it."""
    out: dict[str, GaugeMetricFamily] = {}
    for metric in EXPORTED:
        assert metric.kind == "gauge", metric.name  # every exporter metric is a gauge
        out[metric.name] = GaugeMetricFamily(metric.name, metric.help, labels=metric.labels)
    return out


def _put(found: dict[str, GaugeMetricFamily], name: str, labels: dict[str, str],
         value: float) -> None:  # fmt: skip
    found[name].add_metric([labels[key] for key in BY_NAME[name].labels], value)


class TimestampCache:
    """``first_timestamps`` with a memory: a record never changes, so the timestamp at a
    (partition, offset) is read once and reused while that offset stays the oldest unread.
    Holds, per topic, only the offsets of the last call for that topic, one per partition;
    ``keep`` forgets the topics no longer read."""

    def __init__(self, read: Timestamps = first_timestamps) -> None:
        self._read = read
        self._known: dict[str, dict[tuple[int, int], int]] = {}

    def __call__(self, consumer: Any, topic: str, offsets: dict[int, int]) -> dict[int, int]:
        known = self._known.get(topic, {})
        found = {p: known[(p, o)] for p, o in offsets.items() if (p, o) in known}
        missing = {p: o for p, o in offsets.items() if p not in found}
        if missing:
            found.update(self._read(consumer, topic, missing))
        self._known[topic] = {(p, offsets[p]): ts for p, ts in found.items()}
        return found

    def keep(self, topics: set[str]) -> None:
        """Forget what was read of every topic but ``topics``."""
        for topic in set(self._known) - topics:
            del self._known[topic]


def _read(status: StatusReader, name: str, times: TimestampCache) -> Status:
    """One reading of pipeline ``name``; ``times`` forgets the topics it no longer reads."""
    found = status(name, times)
    times.keep({one.pipeline.topic for one in per_topic(found)})
    return found


def lag_seconds(row: PartitionStatus, now_ms: int) -> float | None:
    """Age of the oldest unread record: 0 when caught up; None when not known (nothing
    stored yet, or the broker gave no timestamp)."""
    if row.lag == 0:
        return 0.0
    if row.lag is None or row.oldest_ms is None:
        return None
    return max(0, now_ms - row.oldest_ms) / 1000


def _reason(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return clip(text if isinstance(exc, WorkersError) and text else
                f"{type(exc).__name__}: {text}".rstrip(": "), 300)  # fmt: skip


class LagCollector(Collector):
    """The exporter's metrics (``workers.metrics.catalog``, source "exporter") of ``names``.

    A scrape starts a reading of every pipeline's status and queue backlog whose last one is
    ``min_interval`` seconds old or more (else it reuses it), each in its own thread, and
    waits for them at most ``scrape_timeout`` seconds. A pipeline whose status could not be
    read (an error, or no answer in time) has ``workers_pipeline_up`` 0 and no other series;
    a backlog that could not be read is left out. Each change between readable and not is
    logged once.
    """

    def __init__(self, names: Sequence[str], status: StatusReader, backlog: BacklogReader, *,
                 min_interval: float = 5.0, scrape_timeout: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.names = list(dict.fromkeys(names))
        self.min_interval, self.scrape_timeout = min_interval, scrape_timeout
        self._status = {n: Probe(f"lag {n}", partial(_read, status, n, TimestampCache()), clock)
                        for n in self.names}  # fmt: skip
        self._backlog = {n: Probe(f"backlog {n}", partial(backlog, n), clock) for n in self.names}
        self._readable: dict[tuple[str, str], bool] = {}
        self._lock = threading.Lock()  # concurrent scrapes log each change once

    @classmethod
    def for_ops(cls, ops: Ops, names: Sequence[str], **options: Any) -> LagCollector:
        """Reading with the clients of an operator command: ``pipeline_status`` and the
        puller's own backlog measure (``CeleryDispatcher.backlog``)."""
        dispatchers: dict[str, CeleryDispatcher] = {}

        def status(name: str, times: Timestamps) -> Status:
            return pipeline_status(ops, name, timestamps=times)

        def backlog(name: str) -> tuple[str, int]:
            if name not in dispatchers:
                dispatchers[name] = CeleryDispatcher(ops.app, ops.pipeline(name))
            dispatcher = dispatchers[name]
            count = dispatcher.backlog()
            if count is None:
                raise RecoverableError(f"the length of queue {dispatcher.queue!r} is not known")
            return dispatcher.queue, count

        return cls(names, status, backlog, **options)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from families().values()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        probes: list[Probe[Any]] = [*self._status.values(), *self._backlog.values()]
        for probe in probes:
            probe.request(self.min_interval)
        deadline = time.monotonic() + self.scrape_timeout
        for probe in probes:
            probe.wait(max(0.0, deadline - time.monotonic()))
        found = families()
        with self._lock:
            for name in self.names:
                self._add(found, name)
        yield from found.values()

    def _add(self, found: dict[str, GaugeMetricFamily], name: str) -> None:
        status = self._value(self._status[name], "lag", name)
        _put(found, "workers_pipeline_up", {"pipeline": name}, 0 if status is None else 1)
        if status is None:
            return
        for one in per_topic(status):
            for row in one.partitions:
                labels = {"pipeline": name, "topic": one.pipeline.topic,
                          "partition": str(row.partition)}  # fmt: skip
                _put(found, "workers_log_end_offset", labels, row.log_end)
                if row.stored is not None:
                    _put(found, "workers_committed_offset", labels, row.stored)
                if row.lag is not None:
                    _put(found, "workers_lag_records", labels, row.lag)
                seconds = lag_seconds(row, one.now_ms)
                if seconds is not None:
                    _put(found, "workers_lag_seconds", labels, seconds)
        backlog = self._value(self._backlog[name], "backlog", name)
        if backlog is not None:
            queue, count = backlog
            _put(found, "workers_queue_backlog", {"pipeline": name, "queue": queue}, count)

    def _value(self, probe: Probe[T], what: str, name: str) -> T | None:
        """The probe's value, or None (logging the change) when it has none to give now."""
        last = probe.last
        if probe.running or last is None:
            reason = f"no answer within {self.scrape_timeout:g} s"
        elif last.error is not None:
            reason = _reason(last.error)
        else:
            self._changed(what, name, None, last.value)
            return last.value
        self._changed(what, name, reason, None)
        return None

    def _changed(self, what: str, name: str, reason: str | None, value: Any) -> None:
        was = self._readable.get((what, name))
        now = self._readable[(what, name)] = reason is None
        if was == now:
            return
        subject = "its lag" if what == "lag" else "its first stage's queue backlog"
        if reason is not None:
            down = " (workers_pipeline_up 0)" if what == "lag" else ""
            logger.warning("pipeline %s: cannot read %s%s: %s", name, subject, down, reason)
        elif what == "lag":
            again = " again" if was is False else ""
            where = f"{value.pipeline.cluster}/{value.pipeline.source}"
            if isinstance(value, ManyStatus):
                where += f" ({len(value.topics)} now)"
            logger.info("pipeline %s: lag read%s: %d partitions of %s", name, again,
                        len(value.partitions), where)  # fmt: skip
        elif was is False:
            logger.info("pipeline %s: %s read again", name, subject)
