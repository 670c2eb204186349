"""One pull cycle: lease → seek → poll → decode → hand off → commit, in that order.

The commit is always the last step: after each batch the broker accepted (and after the dead
letters before it were confirmed), the partitions' next offsets are committed, fenced by the
leases. A crash therefore re-sends at most the batch in flight and never skips a record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition
from kafka.errors import OffsetOutOfRangeError

from workers.codecs import Message, decode
from workers.config import PipelineConfig
from workers.consumer import Consumer
from workers.deadletter import DeadLetters
from workers.exceptions import Fenced, InvalidRecord, WorkersError
from workers.keys import Space
from workers.leases import Lease, Leases
from workers.offsets import Checkpoint, OffsetStore, Position
from workers.pipeline import Dispatcher
from workers.positions import Positioner, out_of_range, seek

logger = logging.getLogger(__name__)


class TopicMissing(WorkersError):
    """The pipeline's topic does not exist (or has no partitions) on its cluster."""


@dataclass(slots=True)
class Summary:
    """What one cycle did; ``committed`` maps partition → next offset stored by this cycle."""

    pipeline: str
    partitions: list[int] = field(default_factory=list)
    records: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    batches: int = 0
    bytes: int = 0
    committed: dict[int, int] = field(default_factory=dict)
    stopped_by: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (Celery results are JSON): partitions as string keys."""
        out = {name: getattr(self, name) for name in self.__slots__}
        out["committed"] = {str(p): o for p, o in sorted(self.committed.items())}
        out["seconds"] = round(self.seconds, 3)
        return out


class _Stop(Exception):
    """Ends the read loop early; the argument says why."""


@dataclass(slots=True)
class _Cycle:
    summary: Summary
    leases: dict[int, Lease]
    generations: dict[int, int]
    cursor: dict[int, int]  # next offset after the last record decoded or dead-lettered
    committed: dict[int, int]
    batch: list[Message] = field(default_factory=list)
    batch_bytes: int = 0
    ends: dict[int, int] | None = None  # until_caught_up: each partition's log end at start


class Puller:
    """Pulls one pipeline's topic for one owner of leases (``leases.token``).

    ``until_caught_up`` ends a cycle at the first empty poll, or once it has read past where
    the logs ended as it started (Beat mode); otherwise a cycle
    runs to its record, byte or time limit, handing off partial batches whenever a poll comes
    back empty (long-lived mode). ``stopping`` is checked between polls.
    """

    def __init__(
        self,
        pipeline: PipelineConfig,
        *,
        space: Space,
        store: OffsetStore,
        leases: Leases,
        consumer: Consumer,
        dispatcher: Dispatcher,
        dead_letters: DeadLetters,
        clock: Callable[[], float] = time.monotonic,
        stopping: Callable[[], bool] = lambda: False,
        until_caught_up: bool = True,
        poll_timeout: float = 0.5,
    ) -> None:
        self.pipeline = pipeline
        self.space = space
        self.store = store
        self.leases = leases
        self.consumer = consumer
        self.dispatcher = dispatcher
        self.dead_letters = dead_letters
        self.clock = clock
        self.stopping = stopping
        self.until_caught_up = until_caught_up
        self.poll_timeout = poll_timeout
        self.positioner = Positioner(
            store, consumer, space, leases.token, pipeline.start, pipeline.out_of_range
        )
        self.held: list[Lease] = []
        # Most records one poll returns: polled records are parsed and kept alive (the garbage
        # collector scans them), and those past a stop for backpressure are fetched again.
        self.poll_records = max(pipeline.batch_size, 500)  # 500: kafka-python's default

    def cycle(self) -> Summary:
        """One bounded pull. Raises ``RecoverableError`` when a service fails mid-way (what was
        handed off before is committed); ``TopicMissing`` when there is nothing to read."""
        started = self.clock()
        summary = Summary(self.pipeline.name)
        partitions = self.consumer.partitions_for_topic(self.pipeline.topic)
        if not partitions:
            raise TopicMissing(
                f"pipeline {self.pipeline.name!r}: topic {self.pipeline.topic!r} does not exist "
                f"on cluster {self.pipeline.cluster!r}"
            )
        grant = self.leases.acquire(self.space, sorted(partitions), self.pipeline.max_partitions)
        self.held = list(grant.leases)
        try:
            positions = self.positioner.prepare(self.held) if self.held else {}
        except Fenced as lost:
            summary.stopped_by = _why(lost)
            return summary
        summary.partitions = sorted(positions)
        summary.committed.update(self.positioner.repaired)
        if not positions:
            summary.stopped_by = "no_partitions"
            return summary
        offsets = {p: pos.offset for p, pos in positions.items() if pos.offset is not None}
        seek(self.consumer, self.pipeline.topic, offsets)
        leases = {lease.partition: lease for lease in self.held if lease.partition in positions}
        generations = {p: pos.generation for p, pos in positions.items()}
        run = _Cycle(summary, leases, generations, dict(offsets), dict(offsets))
        if self.until_caught_up:  # where each log ends now (see _beyond)
            tps = [TopicPartition(self.pipeline.topic, p) for p in sorted(offsets)]
            run.ends = {tp.partition: end for tp, end in self.consumer.end_offsets(tps).items()}
        try:
            self._read(run, started)
        except _Stop as stop:
            summary.stopped_by = str(stop)
        summary.seconds = self.clock() - started
        logger.debug("pull %s: %s", self.pipeline.name, summary)
        return summary

    def release(self, leave: bool = True) -> None:
        """Give back every lease held (call when done, and after an error)."""
        held, self.held = self.held, []
        if held:
            self.leases.release(self.space, held, leave=leave)

    def _read(self, run: _Cycle, started: float) -> None:
        limits = self.pipeline
        deadline = started + limits.max_seconds
        # Stop reading with time to spare: a hand-off after the lease ran out is a duplicate.
        margin = min(1.0, limits.lease_ttl_seconds / 10)
        lease_deadline = min(lease.deadline for lease in run.leases.values()) - margin
        self._check_backlog(run)
        while True:
            if self.stopping():
                self._flush(run)
                raise _Stop("stop")
            if run.summary.records >= limits.max_records:
                self._flush(run)
                raise _Stop("max_records")
            if run.summary.bytes >= limits.max_bytes:
                self._flush(run)
                raise _Stop("max_bytes")
            now = self.clock()
            if now >= deadline or now >= lease_deadline:
                self._flush(run)
                raise _Stop("max_seconds" if now >= deadline else "lease_deadline")
            timeout = min(self.poll_timeout, deadline - now)
            try:
                polled = self.consumer.poll(
                    timeout_ms=max(1, int(timeout * 1000)),
                    max_records=min(limits.max_records - run.summary.records, self.poll_records),
                )
            except OffsetOutOfRangeError as exc:
                self._out_of_range(run, exc)
                continue
            for records in polled.values():
                for record in records:
                    self._take(run, record)
            if not polled or (run.ends is not None and _beyond(run.ends, run.cursor, polled)):
                self._flush(run)  # a partial batch is handed off at once
                if self.until_caught_up:
                    raise _Stop("caught_up")

    def _take(self, run: _Cycle, record: Any) -> None:
        p = record.partition
        if p not in run.cursor or record.offset < run.cursor[p]:
            return  # not ours, or fetched before a seek: never deliver a record twice
        size = len(record.value or b"") + len(record.key or b"")
        try:
            message = decode(
                record, self.pipeline.cluster, self.pipeline.codec, self.pipeline.max_value_bytes
            )
        except InvalidRecord as bad:
            self.dead_letters.send(record, bad.reason)
            run.summary.dead_lettered += 1
        else:
            run.batch.append(message)
            run.batch_bytes += size
        run.cursor[p] = record.offset + 1
        run.summary.records += 1
        run.summary.bytes += size
        if len(run.batch) >= self.pipeline.batch_size or (
            run.batch_bytes >= self.pipeline.batch_max_bytes
        ):
            self._flush(run)
            self._check_backlog(run)

    def _check_backlog(self, run: _Cycle) -> None:
        limit = self.pipeline.max_queue_length
        waiting = None if limit is None else self.dispatcher.backlog()
        if waiting is not None and limit is not None and waiting > limit:
            self._flush(run)
            logger.info(
                "pull %s stops early: %d messages wait in queue (limit %d)",
                self.pipeline.name, waiting, limit,
            )  # fmt: skip
            raise _Stop("backlog")

    def _flush(self, run: _Cycle) -> None:
        """Hand off the batch in hand, then commit everything handed off or dead-lettered."""
        if run.batch:
            self.dispatcher.hand_off(run.batch)
            run.summary.batches += 1
            run.summary.delivered += len(run.batch)
            run.batch, run.batch_bytes = [], 0
        dirty = {p: c for p, c in run.cursor.items() if c != run.committed[p]}
        if not dirty:
            return
        self.dead_letters.flush()
        checkpoints = [
            Checkpoint(p, offset, run.leases[p].epoch, run.generations[p])
            for p, offset in sorted(dirty.items())
        ]
        outcomes = self.store.commit(self.space, self.leases.token, checkpoints)
        refused = {p: o.status for p, o in outcomes.items() if not o.ok}
        for p, offset in dirty.items():
            if p not in refused:
                run.committed[p] = run.summary.committed[p] = offset
        if refused:
            # Lost leases or an operator reset: what we read may belong to someone else now.
            logger.warning(
                "pull %s: commit refused %s; ending the cycle", self.pipeline.name, refused
            )
            raise _Stop("reset" if "reset" in refused.values() else "lease_lost")

    def _out_of_range(self, run: _Cycle, exc: OffsetOutOfRangeError) -> None:
        self._flush(run)  # the stored offset is then the fetch position
        positions = out_of_range(exc)
        for tp in positions:
            p = tp.partition
            if p not in run.leases:
                continue
            try:
                fixed = self.positioner.on_out_of_range(
                    run.leases[p], Position(run.cursor[p], run.generations[p])
                )
            except Fenced as lost:
                raise _Stop(_why(lost)) from None
            assert fixed.offset is not None
            self.consumer.seek(tp, fixed.offset)
            run.cursor[p] = run.committed[p] = run.summary.committed[p] = fixed.offset
        if not positions:
            raise exc


def _beyond(ends: dict[int, int], cursor: dict[int, int], polled: Any) -> bool:
    """Caught up, for a cycle that ends when it is (Beat mode): every partition is read up to
    where its log ended as the cycle started, and the last poll returned records written since.
    Under a steady stream no poll comes back empty: reading on would hold the worker process
    (and the leases) until ``max_seconds`` while the batches handed off wait for a process."""
    return all(cursor[p] >= end for p, end in ends.items()) and any(
        records and records[-1].offset >= ends.get(tp.partition, records[-1].offset + 1)
        for tp, records in polled.items()
    )


def _why(fenced: Fenced) -> str:
    return "reset" if fenced.status == "reset" else "lease_lost"
