"""One pull cycle: lease → position → re-drive → poll → decode → record → hand off.

Offsets follow completion: before each batch is handed off, its slice of every partition is
recorded in the in-flight ledger (``workers.ledger``), fenced by the leases; the pipeline's
last stage finishes it, and only then may a partition's committed offset pass its records.
A partition stops reading while ``max_in_flight`` of its batches are unfinished. Slices not
finished by their due time are re-driven (``workers.redrive``) at the start of a cycle.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition
from kafka.errors import OffsetOutOfRangeError

from workers.codecs import Message, decode_or_reason
from workers.config import PipelineConfig
from workers.consumer import Consumer
from workers.deadletter import DeadLetters
from workers.exceptions import Fenced, RecoverableError, WorkersError
from workers.keys import Space
from workers.leases import Lease, Leases
from workers.ledger import Fence, Ledger, PartitionState, Slice
from workers.offsets import OffsetStore, Position
from workers.pipeline import Dispatcher, Unencodable, unencodable
from workers.positions import Positioner, out_of_range, seek
from workers.redrive import Redriver, Refused
from workers.tickets import Ticket

logger = logging.getLogger(__name__)


class TopicMissing(WorkersError):
    """The pipeline's topic does not exist (or has no partitions) on its cluster."""


@dataclass(slots=True)
class Summary:
    """What one cycle did. ``reached`` maps each partition the cycle moved to the next offset
    past what it handed off or dead-lettered (or where a repair put it); the committed offset
    follows once the pipeline has finished those batches (see ``workers.ledger``)."""

    pipeline: str
    partitions: list[int] = field(default_factory=list)
    records: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    batches: int = 0
    bytes: int = 0
    redriven: int = 0
    split: int = 0
    abandoned: int = 0
    reached: dict[int, int] = field(default_factory=dict)
    stopped_by: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (Celery results are JSON): partitions as string keys."""
        out = {name: getattr(self, name) for name in self.__slots__}
        out["reached"] = {str(p): o for p, o in sorted(self.reached.items())}
        out["seconds"] = round(self.seconds, 3)
        return out


class _Stop(Exception):
    """Ends the read loop early; the argument says why."""


@dataclass(slots=True)
class _Cycle:
    summary: Summary
    fences: dict[int, Fence]
    cursor: dict[int, int]  # next offset after the last record decoded or dead-lettered
    reach: dict[int, int]  # next offset after the last record recorded in the ledger
    flying: dict[int, int]  # batches in flight per partition
    paused: set[int] = field(default_factory=set)
    batch: list[Message] = field(default_factory=list)
    records: list[Any] = field(default_factory=list)  # the batch's records, for dead letters
    batch_bytes: int = 0
    ends: dict[int, int] | None = None  # until_caught_up: each partition's log end at start


class Puller:
    """Pulls one pipeline's topic for one owner of leases (``leases.token``).

    ``until_caught_up`` ends a cycle at the first empty poll, or once it has read past where
    the logs ended as it started (Beat mode); otherwise a cycle runs to its record, byte or
    time limit, handing off partial batches whenever a poll comes back empty (long-lived
    mode). ``stopping`` is checked between polls. ``budget`` is the time (seconds) a batch's
    stages have to finish it before it is handed off again.
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
        clock: Callable[[], float] = time.monotonic,
        stopping: Callable[[], bool] = lambda: False,
        until_caught_up: bool = True,
        poll_timeout: float = 0.5,
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
        self.positioner = Positioner(
            store, consumer, space, leases.token, pipeline.start, pipeline.out_of_range
        )
        self.redriver = Redriver(
            pipeline,
            space=space,
            token=leases.token,
            ledger=ledger,
            consumer=consumer,
            dispatcher=dispatcher,
            dead_letters=dead_letters,
            budget_ms=max(1, int(budget * 1000)),
        )
        self.held: list[Lease] = []
        # Most records one poll returns: polled records are parsed and kept alive (the garbage
        # collector scans them), and those past a stop for backpressure are fetched again.
        self.poll_records = max(pipeline.batch_size, 500)  # 500: kafka-python's default

    def cycle(self) -> Summary:
        """One bounded pull. Raises ``RecoverableError`` when a service fails mid-way (what was
        recorded before stays in the ledger); ``TopicMissing`` when there is nothing to read."""
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
            prepared = self.positioner.prepare(self.held) if self.held else {}
        except Fenced as lost:
            summary.stopped_by = _why(lost.status)
            return summary
        if not prepared:
            summary.stopped_by = "no_partitions"
            return summary
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
        run = _Cycle(summary, fences, dict(start), dict(start), flying)
        seek(self.consumer, self.pipeline.topic, start)
        try:
            if self._redrive(run, books, snapshot.now_ms):
                seek(self.consumer, self.pipeline.topic, start)  # back from the re-reads
            if self._pause_full(run):
                raise _Stop("in_flight")
            if self.until_caught_up:  # where each log ends now (see _beyond)
                tps = [TopicPartition(self.pipeline.topic, p) for p in sorted(start)]
                run.ends = {tp.partition: e for tp, e in self.consumer.end_offsets(tps).items()}
            self._read(run, started)
        except _Stop as stop:
            summary.stopped_by = str(stop)
        summary.reached.update({p: at for p, at in run.reach.items() if at != start[p]})
        summary.seconds = self.clock() - started
        logger.debug("pull %s: %s", self.pipeline.name, summary)
        return summary

    def release(self, leave: bool = True) -> None:
        """Give back every lease held (call when done, and after an error)."""
        held, self.held = self.held, []
        if held:
            self.leases.release(self.space, held, leave=leave)

    # -- re-drives and backpressure ------------------------------------------------------

    def _redrive(self, run: _Cycle, books: dict[int, PartitionState], now_ms: int) -> bool:
        """Re-drive the overdue slices; True if any partition was read again."""
        touched = False
        for p, book in sorted(books.items()):
            if not any(e.due_ms <= now_ms for e in book.in_flight):
                continue
            touched = True
            try:
                counts = self.redriver.overdue(book.in_flight, run.fences[p], now_ms, self.stopping)
            except Refused as refused:
                raise _Stop(_why(refused.status)) from None
            run.summary.redriven += counts.redriven
            run.summary.split += counts.split
            run.summary.abandoned += counts.abandoned
            run.summary.dead_lettered += counts.abandoned
        if touched:  # splits and finishes changed the counts
            fresh = self.ledger.snapshot(self.space, books).partitions
            run.flying.update({p: len(b.in_flight) for p, b in fresh.items()})
        return touched

    def _drop_malformed(self, partition: int, fields: tuple[str, ...]) -> None:
        """Entries of the books that are not entries (tampered with) hold nothing back and
        describe nothing that can be re-driven: drop them, loudly."""
        logger.error(
            "%s: fields %s are not valid ledger entries; dropped (the committed offset never "
            "depended on them)",
            self.space.key("ledger", partition), ", ".join(repr(f[:40]) for f in fields[:5]),
        )  # fmt: skip
        dropped = [Slice(partition, f[2:], 0, 1) for f in fields if f.startswith("b:")]
        for one in dropped:  # one call per slice: at most one slice per partition per call
            self.ledger.finish(self.space, [one])

    def _pause_full(self, run: _Cycle) -> bool:
        """Pause the partitions with ``max_in_flight`` batches unfinished and resume the
        others; True when every partition is paused."""
        topic, limit = self.pipeline.topic, self.pipeline.max_in_flight
        full = {p for p, n in run.flying.items() if n >= limit}
        self.consumer.resume(*(TopicPartition(topic, p) for p in run.flying if p not in full))
        for p in sorted(full - run.paused):
            tp = TopicPartition(topic, p)
            self.consumer.seek(tp, run.cursor[p])  # drop what was fetched past the cursor
            self.consumer.pause(tp)
        run.paused = full
        return bool(full) and full == set(run.flying)

    # -- reading -------------------------------------------------------------------------

    def _read(self, run: _Cycle, started: float) -> None:
        limits = self.pipeline
        deadline = started + limits.max_seconds
        # Stop reading with time to spare: a hand-off after the lease ran out is a duplicate.
        margin = min(1.0, limits.lease_ttl_seconds / 10)
        held = [lease.deadline for lease in self.held if lease.partition in run.fences]
        lease_deadline = min(held) - margin
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
            if not polled or (run.ends is not None and _beyond(run, polled)):
                self._flush(run)  # a partial batch is handed off at once
                if self.until_caught_up:
                    raise _Stop("caught_up")
                if run.paused and run.paused == set(run.flying):
                    raise _Stop("in_flight")

    def _take(self, run: _Cycle, record: Any) -> None:
        p = record.partition
        if p not in run.cursor or p in run.paused or record.offset < run.cursor[p]:
            return  # not ours, paused, or fetched before a seek: never deliver a record twice
        size = len(record.value or b"") + len(record.key or b"")
        c = self.pipeline
        message = decode_or_reason(record, c.cluster, c.codec, c.max_value_bytes, c.max_depth)
        if isinstance(message, str):
            self.dead_letters.send(record, message)
            run.summary.dead_lettered += 1
        else:
            run.batch.append(message)
            run.records.append(record)
            run.batch_bytes += size
        run.cursor[p] = record.offset + 1
        run.summary.records += 1
        run.summary.bytes += size
        if len(run.batch) >= self.pipeline.batch_size or (
            run.batch_bytes >= self.pipeline.batch_max_bytes
        ):
            self._flush(run)
            if run.paused and run.paused == set(run.flying):
                raise _Stop("in_flight")
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

    # -- recording and handing off -------------------------------------------------------

    def _flush(self, run: _Cycle) -> None:
        """Record what was read since the last flush in the ledger, then hand off the batch."""
        dirty = sorted(p for p, c in run.cursor.items() if c != run.reach[p])
        if not dirty:
            return
        self.dead_letters.flush()  # confirmed before the ledger moves past them
        carried = {m["partition"] for m in run.batch}
        batch_id = uuid.uuid4().hex[:16] if run.batch else ""
        slices = [
            Slice(p, batch_id if p in carried else "", run.reach[p], run.cursor[p]) for p in dirty
        ]
        due_in = self.redriver.due_in(0)
        settled = self.ledger.record(self.space, self.leases.token, run.fences, slices, due_in)
        refused = {p: s.status for p, s in settled.items() if not s.ok}
        for p, s in settled.items():
            if s.ok:
                run.reach[p] = run.cursor[p]
                run.flying[p] = s.in_flight or 0  # finishes since the cycle began count too
        kept = [(m, r) for m, r in zip(run.batch, run.records, strict=True)
                if m["partition"] not in refused]  # fmt: skip
        run.batch, run.records, run.batch_bytes = [], [], 0
        if kept:
            carrying = [x for x in slices if x.batch and x.partition not in refused]
            self._hand_off(run, kept, self.redriver.ticket(carrying))
        if refused:
            # Lost leases or an operator reset: what we read may belong to someone else now.
            logger.warning(
                "pull %s: ledger refused %s; ending the cycle", self.pipeline.name, refused
            )
            raise _Stop("reset" if "reset" in refused.values() else "lease_lost")
        self._pause_full(run)

    def _hand_off(self, run: _Cycle, kept: list[tuple[Message, Any]], ticket: Ticket) -> None:
        batch = [m for m, _ in kept]
        try:
            try:
                self.dispatcher.hand_off(batch, ticket)
            except Unencodable as exc:  # decoding should have refused these: defence in depth
                logger.error("pull %s: %s; dead-lettering what fails alone", self.space, exc)
                batch = self._without_unencodable(run, kept)
                if not batch:
                    self.ledger.finish(self.space, ticket.slices)
                    return
                self.dispatcher.hand_off(batch, ticket)
        except RecoverableError:
            try:  # re-drive it at the next cycle instead of at its due time
                self.ledger.expedite(self.space, ticket.slices)
            except RecoverableError as exc:
                logger.warning("pull %s: cannot expedite a batch: %s", self.space, exc)
            raise
        run.summary.batches += 1
        run.summary.delivered += len(batch)

    def _without_unencodable(self, run: _Cycle, kept: list[tuple[Message, Any]]) -> list[Message]:
        """Dead-letter (and confirm) the messages that cannot be encoded alone; the rest."""
        good = []
        for message, record in kept:
            reason = unencodable(message)
            if reason is None:
                good.append(message)
            else:
                self.dead_letters.send(record, reason)
                run.summary.dead_lettered += 1
        self.dead_letters.flush()
        return good

    def _out_of_range(self, run: _Cycle, exc: OffsetOutOfRangeError) -> None:
        self._flush(run)  # the books then end at the fetch position
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
                raise _Stop(_why(lost.status)) from None
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


def _beyond(run: _Cycle, polled: Any) -> bool:
    """Caught up, for a cycle that ends when it is (Beat mode): every partition still read is
    read up to where its log ended as the cycle started, and the last poll returned records
    written since. Under a steady stream no poll comes back empty: reading on would hold the
    worker process (and the leases) until ``max_seconds`` while the batches wait for one."""
    assert run.ends is not None
    ends = run.ends
    return all(run.cursor[p] >= end for p, end in ends.items() if p not in run.paused) and any(
        records and records[-1].offset >= ends.get(tp.partition, records[-1].offset + 1)
        for tp, records in polled.items()
    )


def _why(status: str) -> str:
    return "reset" if status == "reset" else "lease_lost"
