"""One pull cycle: lease → position → re-drive → poll → decode → record → hand off.

Offsets follow completion: before each batch is handed off, its slice of every partition is
recorded in the in-flight ledger (``workers.state.ledger``), fenced by the leases, by the
``Outbox``; the pipeline's last stage finishes it, and only then may a partition's committed
offset pass its records. Slices not finished by their due time are re-driven
(``workers.pulling.redrive``) at the start of a cycle.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from kafka.errors import OffsetOutOfRangeError

from workers.config import PipelineConfig
from workers.exceptions import Fenced, WorkersError
from workers.kafka.codecs import decode_or_reason
from workers.kafka.consumer import Consumer
from workers.kafka.deadletter import DeadLetters
from workers.metrics import record as metrics
from workers.pulling.cycle import Run, Stop, Summary, why
from workers.pulling.handoff import Dispatcher
from workers.pulling.kafka_copy import KafkaCopy
from workers.pulling.outbox import Outbox
from workers.pulling.parts import Parts
from workers.pulling.positions import Positioner, out_of_range, seek
from workers.pulling.redrive import Redriver
from workers.runtime.logformat import at
from workers.state.brake import Brake
from workers.state.keys import Space
from workers.state.leases import Lease, Leases
from workers.state.ledger import Fence, Ledger, PartitionState, Slice
from workers.state.offsets import OffsetStore, Position

logger = logging.getLogger(__name__)


class TopicMissing(WorkersError):
    """The pipeline's topic does not exist (or has no partitions) on its cluster."""


class Puller:
    """Pulls one pipeline's topic for one owner of leases (``leases.token``).

    ``until_caught_up`` ends a cycle at the first empty poll, or once it has read up to where
    the logs ended as it started, without a poll when it starts there (Beat mode); otherwise
    a cycle runs to its record, byte or time limit, handing off partial batches whenever a
    poll comes back empty (long-lived mode). ``stopping`` is checked between polls.
    ``budget`` is the time (seconds) a batch's stages have to finish it before it is handed
    off again.
    """

    def __init__(
        self,
        pipeline: PipelineConfig,
        *,
        space: Space,
        store: OffsetStore,
        leases: Leases,
        ledger: Ledger,
        consumer: Consumer,
        dispatcher: Dispatcher,
        dead_letters: DeadLetters,
        budget: float,
        brake: Brake | None = None,
        clock: Callable[[], float] = time.monotonic,
        stopping: Callable[[], bool] = lambda: False,
        until_caught_up: bool = True,
        poll_timeout: float = 0.5,
        kafka_copy: KafkaCopy | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.space = space
        self.store = store
        self.leases = leases
        self.ledger = ledger
        self.consumer = consumer
        self.dispatcher = dispatcher
        self.dead_letters = dead_letters
        self.clock = clock
        self.stopping = stopping
        self.until_caught_up = until_caught_up
        self.poll_timeout = poll_timeout
        self.kafka_copy = kafka_copy  # Kafka's copy of the committed offsets (None: off)
        self.positioner = Positioner(
            store, consumer, space, leases.token, pipeline.start, pipeline.out_of_range, kafka_copy
        )
        parts = Parts(
            pipeline, space, leases.token, ledger, consumer, dispatcher, dead_letters, brake
        )
        self.redriver = Redriver(parts, budget_ms=max(1, int(budget * 1000)))
        self.outbox = Outbox(parts, self.redriver)
        self.held: list[Lease] = []
        # Most records one poll returns: polled records are parsed and kept alive (the garbage
        # collector scans them), and those past a stop for backpressure are fetched again.
        self.poll_records = max(pipeline.batch_size, 500)  # 500: kafka-python's default

    def cycle(self) -> Summary:
        """One bounded pull. Raises ``RecoverableError`` when a service fails mid-way (what was
        recorded before stays in the ledger); ``TopicMissing`` when there is nothing to read."""
        started = self.clock()
        summary = Summary(self.pipeline.name)
        if self.outbox.braked():  # nothing is read, re-driven or recorded until a resume
            self.release()
            summary.stopped_by = "brake"
            return summary
        partitions = self.consumer.partitions_for_topic(self.pipeline.topic)
        if not partitions:
            raise TopicMissing(
                f"pipeline {self.pipeline.name!r}: topic {self.pipeline.topic!r} does not exist "
                f"on cluster {self.pipeline.cluster!r}"
            )
        grant = self.leases.acquire(self.space, sorted(partitions), self.pipeline.max_partitions)
        metrics.leases(self.pipeline.name, len(grant.leases) - len(self.held))
        self.held = list(grant.leases)
        try:
            prepared = self.positioner.prepare(self.held) if self.held else {}
        except Fenced as lost:
            summary.stopped_by = why(lost.status)
            return summary
        if not prepared:
            summary.stopped_by = "no_partitions"
            return summary
        self._copy_offsets(prepared)
        snapshot = self.ledger.snapshot(self.space, prepared)
        books = snapshot.partitions
        for p, book in sorted(books.items()):
            if book.malformed:
                self._drop_malformed(p, book.malformed)
        epochs = {lease.partition: lease.epoch for lease in self.held}
        fences = {p: Fence(epochs[p], books[p].generation) for p in books}
        start = {p: _read_from(b, prepared[p]) for p, b in books.items()}
        flying = {p: len(b.in_flight) for p, b in books.items()}
        summary.partitions = sorted(books)
        for p, offset in self.positioner.repaired.items():  # moved out of range by policy
            summary.reached[p] = offset
        run = Run(summary, fences, dict(start), dict(start), flying)
        seek(self.consumer, self.pipeline.topic, start)
        try:
            if self.redriver.all_overdue(run, books, snapshot.now_ms, self.stopping):
                seek(self.consumer, self.pipeline.topic, start)  # back from the re-reads
            if self.outbox.pause_full(run):
                raise Stop("in_flight")
            if self.until_caught_up:  # where each log ended as the cycle began (see _beyond)
                run.ends = {p: self.positioner.ends[p] for p in start}
                if all(run.cursor[p] == end for p, end in run.ends.items()):
                    raise Stop("caught_up")  # nothing to read: no poll waits for nothing
            self._read(run, started)
        except Stop as stop:
            summary.stopped_by = str(stop)
        try:  # what decoded since the last report, to the dead-letter brake
            self.outbox.report(run)
        except Stop as stop:  # tripped meanwhile (by a stage); what was read is recorded
            summary.stopped_by = summary.stopped_by or str(stop)
        summary.reached.update({p: at for p, at in run.reach.items() if at != start[p]})
        self._copy_offsets(run.fences)
        summary.seconds = self.clock() - started
        logger.debug("pull %s: %s", self.pipeline.name, summary)
        return summary

    def _copy_offsets(self, partitions: Iterable[int]) -> None:
        """Kafka's copy of the committed offsets, when due (never raises: ``kafka_copy``)."""
        if self.kafka_copy is not None:
            self.kafka_copy.copy(partitions)

    def release(self, leave: bool = True) -> None:
        """Give back every lease held (call when done, and after an error)."""
        held, self.held = self.held, []
        metrics.leases(self.pipeline.name, -len(held))
        if held:
            self.leases.release(self.space, held, leave=leave)

    # -- re-drives -------------------------------------------------------------------------

    def _drop_malformed(self, partition: int, fields: tuple[str, ...]) -> None:
        """Entries of the books that are not entries (tampered with) hold nothing back and
        describe nothing that can be re-driven: drop them, loudly."""
        logger.error(
            "%s: fields %s are not valid ledger entries; dropped (the committed offset never "
            "depended on them)",
            self.space.key("ledger", partition), ", ".join(repr(f[:40]) for f in fields[:5]),
            extra=at(partition),
        )  # fmt: skip
        dropped = [Slice(partition, f[2:], 0, 1) for f in fields if f.startswith("b:")]
        for one in dropped:  # one call per slice: at most one slice per partition per call
            self.ledger.finish(self.space, [one])

    # -- reading -------------------------------------------------------------------------

    def _read(self, run: Run, started: float) -> None:
        limits = self.pipeline
        deadline = started + limits.max_seconds
        # Stop reading with time to spare: a hand-off after the lease ran out is a duplicate.
        margin = min(1.0, limits.lease_ttl_seconds / 10)
        held = [lease.deadline for lease in self.held if lease.partition in run.fences]
        lease_deadline = min(held) - margin
        linger = limits.batch_linger_seconds
        self._check_backlog(run)
        while True:
            if self.stopping():
                self.outbox.flush(run)
                raise Stop("stop")
            if run.summary.records >= limits.max_records:
                self.outbox.flush(run)
                raise Stop("max_records")
            if run.summary.bytes >= limits.max_bytes:
                self.outbox.flush(run)
                raise Stop("max_bytes")
            self._copy_offsets(run.fences)  # long-lived: every kafka_commit_seconds
            now = self.clock()
            if now >= deadline or now >= lease_deadline:
                self.outbox.flush(run)
                raise Stop("max_seconds" if now >= deadline else "lease_deadline")
            timeout = min(self.poll_timeout, deadline - now)
            if run.batch:  # wake up in time to hand off the batch in hand (its linger)
                timeout = min(timeout, max(0.001, run.batch_since + linger - now))
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
            if not polled or (run.ends is not None and _beyond(run)):
                self.outbox.flush(run)  # a partial batch is handed off at once
                if self.until_caught_up:
                    raise Stop("caught_up")
                if run.paused and run.paused == set(run.flying):
                    raise Stop("in_flight")
            elif run.batch and self.clock() - run.batch_since >= linger:
                self._hand_off(run)  # under a steady trickle: the batch waited long enough

    def _take(self, run: Run, record: Any) -> None:
        p = record.partition
        if p not in run.cursor or p in run.paused or record.offset < run.cursor[p]:
            return  # not ours, paused, or fetched before a seek: never deliver a record twice
        size = len(record.value or b"") + len(record.key or b"")
        c = self.pipeline
        message = decode_or_reason(record, c.cluster, c.codec, c.max_value_bytes, c.max_depth)
        run.tally.add(isinstance(message, str))
        if isinstance(message, str):
            run.refused.append((record, message))  # sent at the flush, if the brake allows
        else:
            if not run.batch:
                run.batch_since = self.clock()
            run.batch.append(message)
            run.records.append(record)
            run.batch_bytes += size
        run.cursor[p] = record.offset + 1
        run.summary.records += 1
        run.summary.bytes += size
        if len(run.batch) >= self.pipeline.batch_size or (
            run.batch_bytes >= self.pipeline.batch_max_bytes
        ):
            self._hand_off(run)

    def _hand_off(self, run: Run) -> None:
        """Hand off the batch in hand; stop when every partition is paused or the first
        task's queue is over its limit."""
        self.outbox.flush(run)
        if run.paused and run.paused == set(run.flying):
            raise Stop("in_flight")
        self._check_backlog(run)

    def _check_backlog(self, run: Run) -> None:
        limit = self.pipeline.max_queue_length
        waiting = None if limit is None else self.dispatcher.backlog()
        if waiting is not None and limit is not None and waiting > limit:
            self.outbox.flush(run)
            logger.info(
                "pull %s stops early: %d messages wait in queue (limit %d)",
                self.pipeline.name, waiting, limit,
            )  # fmt: skip
            raise Stop("backlog")

    def _out_of_range(self, run: Run, exc: OffsetOutOfRangeError) -> None:
        self.outbox.flush(run)  # the books then end at the fetch position
        positions = out_of_range(exc)
        leases = {lease.partition: lease for lease in self.held}
        for tp in positions:
            p = tp.partition
            if p not in run.fences:
                continue
            try:
                fixed = self.positioner.on_out_of_range(
                    leases[p], Position(run.cursor[p], run.fences[p].generation)
                )
            except Fenced as lost:
                raise Stop(why(lost.status)) from None
            assert fixed.offset is not None
            self.consumer.seek(tp, fixed.offset)
            run.cursor[p] = run.reach[p] = fixed.offset
            run.summary.reached[p] = fixed.offset
            run.flying[p] = 0  # a repair starts the partition's books afresh
        if not positions:
            raise exc


def _read_from(book: PartitionState, prepared: Position) -> int:
    """Where the owner reads on: past everything in the books (the stored offset if none)."""
    at = book.read_from
    if at is None:  # the books came after the positions were prepared: trust the positions
        assert prepared.offset is not None
        return prepared.offset
    return at


def _beyond(run: Run) -> bool:
    """Caught up, for a cycle that ends when it is (Beat mode): every partition still read is
    read up to where its log ended as the cycle started. Records written since wait for the
    next cycle: under a steady stream no poll comes back empty, and reading on would hold the
    worker process (and the leases) until ``max_seconds``; and waiting for an empty poll to
    say so costs the broker's fetch wait, for every topic of a pipeline over many."""
    assert run.ends is not None
    return all(run.cursor[p] >= end for p, end in run.ends.items() if p not in run.paused)
