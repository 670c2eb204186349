"""Where each partition of a pipeline stands: committed offset, log edges, lag, oldest unread
record, batches in flight, lease holder, the dead-letter brake; and the one-line view per
pipeline of ``workers lag``; of one topic (``topic_status``). A pipeline over many topics has
one such status per topic it reads now (``workers.ops.overview``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from workers.config import PipelineConfig
from workers.ops.context import Ops
from workers.ops.kafka_drift import kafka_column
from workers.pulling.positions import edges, seek
from workers.state import stats
from workers.state.brake import Trip
from workers.state.brake_redis import RedisBrake
from workers.state.leases import Holder
from workers.state.ledger import PartitionState


@dataclass(frozen=True, slots=True)
class Flight:
    """A partition's batches handed off and not finished: how many, their records (read past
    the committed offset), how many are overdue (re-driven at the owner's next cycle) and the
    most hand-offs and starts any of them took."""

    batches: int = 0
    records: int = 0
    overdue: int = 0
    handoffs: int = 0
    starts: int = 0

    @classmethod
    def of(cls, book: PartitionState | None, now_ms: int) -> Flight:
        if book is None or book.committed is None:
            return cls()
        flying = book.in_flight
        return cls(
            len(flying),
            max(0, (book.read_from or book.committed) - book.committed),
            sum(1 for e in flying if e.due_ms <= now_ms),
            max((e.handoffs for e in flying), default=0),
            max((e.starts for e in flying), default=0),
        )

    @classmethod
    def total(cls, rows: Iterable[Flight]) -> Flight:
        """The batches of many partitions (or topics) in flight: summed, and the most
        hand-offs and starts of any."""
        rows = list(rows)
        return cls(
            sum(f.batches for f in rows),
            sum(f.records for f in rows),
            sum(f.overdue for f in rows),
            max((f.handoffs for f in rows), default=0),
            max((f.starts for f in rows), default=0),
        )


@dataclass(frozen=True, slots=True)
class PartitionStatus:
    """One partition. ``stored`` is the committed offset: everything before it was finished
    by the pipeline or dead-lettered. ``lag`` counts records from it (or the log start, when
    retention removed it) to the log end, batches in flight included; None when nothing is
    stored yet. ``oldest_ms`` is the timestamp of the first record not yet finished, when the
    broker gave it."""

    partition: int
    stored: int | None
    log_start: int
    log_end: int
    lag: int | None
    oldest_ms: int | None
    holder: Holder | None
    skipped: int
    flight: Flight = Flight()
    kafka: int | None = None  # Kafka's copy of the committed offset (None: none, or not read)

    def as_dict(self, now_ms: int) -> dict[str, Any]:
        h = self.holder
        return {
            "partition": self.partition,
            "stored": self.stored,
            "kafka_committed": self.kafka,
            "log_start": self.log_start,
            "log_end": self.log_end,
            "lag": self.lag,
            "oldest_unread_ms": self.oldest_ms,
            "oldest_unread_age_seconds": _age(self.oldest_ms, now_ms),
            "skipped_out_of_range": self.skipped,
            "in_flight": {
                "batches": self.flight.batches, "records": self.flight.records,
                "overdue": self.flight.overdue, "max_handoffs": self.flight.handoffs,
                "max_starts": self.flight.starts,
            },
            "holder": None if h is None else {
                "host": h.host, "pid": h.pid, "task": h.task, "epoch": h.epoch,
                "expires_in_seconds": round(h.expires_in, 1),
            },
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class PipelineStatus:
    pipeline: PipelineConfig
    partitions: list[PartitionStatus]
    counters: dict[str, int] = field(default_factory=dict)
    now_ms: int = 0
    brake: Trip | None = None  # the dead-letter brake's trip, while tripped
    kafka_copy: str = "not read"  # on, off, unreadable: why (``workers.ops.kafka_drift``)

    @property
    def lag(self) -> int | None:
        """Records not yet read in the partitions with a stored offset; None: none has one."""
        known = [p.lag for p in self.partitions if p.lag is not None]
        return sum(known) if known else None

    @property
    def read(self) -> int:
        """Next offsets stored, summed: records read since offset 0 (for rates)."""
        return sum(p.stored or 0 for p in self.partitions)

    @property
    def oldest_age(self) -> float | None:
        ages = [_age(p.oldest_ms, self.now_ms) for p in self.partitions]
        known = [a for a in ages if a is not None]
        return max(known) if known else None

    @property
    def held(self) -> int:
        return sum(1 for p in self.partitions if p.holder is not None)

    @property
    def flight(self) -> Flight:
        """Batches in flight over all partitions (most hand-offs and starts of any)."""
        return Flight.total(p.flight for p in self.partitions)

    @property
    def started(self) -> bool:
        return any(p.stored is not None for p in self.partitions)

    def as_dict(self) -> dict[str, Any]:
        p = self.pipeline
        return {
            "pipeline": p.name, "cluster": p.cluster, "topic": p.topic, "group": p.group,
            "mode": p.mode, "lag": self.lag, "oldest_unread_age_seconds": self.oldest_age,
            "partitions_held": self.held, "counters": self.counters,
            "in_flight": {"batches": self.flight.batches, "records": self.flight.records,
                          "overdue": self.flight.overdue},
            "brake": None if self.brake is None else self.brake.as_dict(),
            "kafka_copy": self.kafka_copy,
            "partitions": [s.as_dict(self.now_ms) for s in self.partitions],
        }  # fmt: skip


# Reads the timestamp of the record at each offset: (consumer, topic, {partition: offset}).
Timestamps = Callable[[Any, str, dict[int, int]], dict[int, int]]


def topic_status(
    ops: Ops,
    pipeline: PipelineConfig,
    ages: bool = True,
    timestamps: Timestamps | None = None,
    kafka: bool = False,
) -> PipelineStatus:
    """The status of ``pipeline.topic``'s partitions (``pipeline``: of one topic, or one
    narrowed to a topic); ``OpsError`` when the topic does not exist."""
    space = ops.space(pipeline)
    parts = ops.partitions(pipeline.cluster, pipeline.topic)
    consumer = ops.connections.consumer(pipeline.cluster)
    bounds = edges(consumer, pipeline.topic, parts)
    store = ops.store()
    positions = store.read(space, parts)
    snapshot = ops.ledger().snapshot(space, parts)
    holders = ops.leases(pipeline).holders(space, parts)
    skipped = store.skipped(space)
    unread: dict[int, int] = {}
    lags: dict[int, int | None] = {}
    for p in parts:
        start, end = bounds[p]
        stored = positions[p].offset
        if stored is None:
            lags[p] = None
            continue
        at = max(stored, start)
        lags[p] = max(0, end - at)
        if lags[p]:
            unread[p] = at
    read_times = timestamps or first_timestamps
    oldest = read_times(consumer, pipeline.topic, unread) if ages and unread else {}
    copied, copy = kafka_column(ops, pipeline, parts) if kafka else ({}, "not read")
    rows = [
        PartitionStatus(p, positions[p].offset, *bounds[p], lags[p], oldest.get(p),
                        holders.get(p), skipped.get(p, 0),
                        Flight.of(snapshot.partitions.get(p), snapshot.now_ms), copied.get(p))
        for p in parts
    ]  # fmt: skip
    counters = stats.read(ops.redis(), space)
    brake = RedisBrake(ops.redis()).state(space)
    return PipelineStatus(pipeline, rows, counters, int(time.time() * 1000), brake, copy)


def first_timestamps(
    consumer: Any, topic: str, offsets: dict[int, int], timeout: float = 3.0
) -> dict[int, int]:
    """The timestamp of the record at each offset (or the first after it), read with a short
    poll; partitions that gave nothing in ``timeout`` are absent."""
    seek(consumer, topic, offsets)
    found: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    while len(found) < len(offsets) and time.monotonic() < deadline:
        batch = consumer.poll(timeout_ms=200, max_records=500)
        for tp, records in batch.items():
            if tp.partition not in found and records and records[0].timestamp >= 0:
                found[tp.partition] = records[0].timestamp
                consumer.pause(tp)
    consumer.resume(*consumer.paused())
    return found


def _age(ms: int | None, now_ms: int) -> float | None:
    return None if ms is None else round(max(0, now_ms - ms) / 1000, 1)
