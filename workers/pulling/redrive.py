"""Re-drives: slices in the ledger that did not finish by their due time are handed off again.

A slice whose message was lost, or whose worker died, is read again from Kafka and handed off
whole, due later each time (backoff). A slice that keeps killing its worker (started
``max_attempts`` times) is split in halves, each handed off on its own, until the record that
kills is alone: that record is dead-lettered and its neighbours go on. A slice that never
started is never dead-lettered: its stages are not running, which a dead letter would not fix.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kafka import TopicPartition
from kafka.errors import OffsetOutOfRangeError

from workers.exceptions import RecoverableError
from workers.kafka.codecs import Message, decode_or_reason
from workers.kafka.consumer import Consumer
from workers.pulling.cycle import Run, Stop, why
from workers.pulling.parts import Parts
from workers.pulling.tickets import Ticket
from workers.runtime.logformat import at
from workers.state.ledger import Fence, InFlight, PartitionState, Slice

logger = logging.getLogger(__name__)

# A slice is due after its budget, doubled with each re-drive up to this (or the budget).
MAX_DUE_MS = 3_600_000


@dataclass(slots=True)
class Counts:
    """What re-drives did in one cycle."""

    redriven: int = 0  # slices handed off again (whole or as halves)
    split: int = 0  # slices split in halves
    abandoned: int = 0  # records dead-lettered because they kept killing their worker
    records: int = 0  # records handed off again


class Refused(Exception):
    """The ledger refused a re-drive: the lease is gone or a reset won (``status``)."""

    def __init__(self, status: str) -> None:
        self.status = status
        super().__init__(status)


def read_range(
    consumer: Consumer, topic: str, partition: int, start: int, end: int, timeout: float
) -> tuple[list[Any], bool]:
    """The records ``[start, end)`` of one assigned partition, read again, and whether the
    whole range was read (False: the broker did not deliver it in time, or retention deleted
    it). The other partitions keep their positions; their pause state is restored."""
    tp = TopicPartition(topic, partition)
    paused = consumer.paused()
    others = [x for x in consumer.assignment() if x != tp]
    consumer.pause(*others)
    consumer.resume(tp)
    consumer.seek(tp, start)
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while consumer.position(tp) < end and time.monotonic() < deadline:
            polled = consumer.poll(timeout_ms=200, max_records=max(1, end - start))
            records += [r for r in polled.get(tp, ()) if start <= r.offset < end]
    except OffsetOutOfRangeError:
        return records, False
    finally:
        consumer.resume(*(x for x in others if x not in paused))
        if tp in paused:
            consumer.pause(tp)
    return records, consumer.position(tp) >= end


class Redriver:
    """Re-drives the overdue slices of the partitions one owner holds."""

    def __init__(self, parts: Parts, budget_ms: int) -> None:
        self.pipeline = parts.pipeline
        self.space = parts.space
        self.token = parts.token
        self.ledger = parts.ledger
        self.consumer = parts.consumer
        self.dispatcher = parts.dispatcher
        self.dead_letters = parts.dead_letters
        self.budget_ms = budget_ms

    def ticket(self, slices: Sequence[Slice]) -> Ticket:
        p = self.pipeline
        return Ticket(p.name, self.space, tuple(slices), self.budget_ms, p.max_attempts)

    def due_in(self, handoffs: int) -> int:
        """Due time of a slice's next hand-off: the budget, doubled per earlier hand-off."""
        due: int = self.budget_ms * 2 ** min(handoffs, 20)
        return min(due, max(self.budget_ms, MAX_DUE_MS))

    def all_overdue(
        self,
        run: Run,
        books: dict[int, PartitionState],
        now_ms: int,
        stopping: Callable[[], bool],
    ) -> bool:
        """Re-drive the overdue slices of every partition of a cycle, counting in its summary;
        True if any partition was read again. Raises ``Stop`` when the ledger refuses."""
        touched = False
        for p, book in sorted(books.items()):
            if not any(e.due_ms <= now_ms for e in book.in_flight):
                continue
            touched = True
            try:
                counts = self.overdue(book.in_flight, run.fences[p], now_ms, stopping)
            except Refused as refused:
                raise Stop(why(refused.status)) from None
            run.summary.redriven += counts.redriven
            run.summary.split += counts.split
            run.summary.abandoned += counts.abandoned
            run.summary.dead_lettered += counts.abandoned
        if touched:  # splits and finishes changed the counts
            fresh = self.ledger.snapshot(self.space, books).partitions
            run.flying.update({p: len(b.in_flight) for p, b in fresh.items()})
        return touched

    def overdue(
        self, entries: Sequence[InFlight], fence: Fence, now_ms: int, stopping: Callable[[], bool]
    ) -> Counts:
        """Handle one partition's overdue slices. Raises ``Refused`` when the ledger refuses
        (stop reading that partition), ``RecoverableError`` when a service fails."""
        counts = Counts()
        for entry in entries:
            if entry.due_ms > now_ms or stopping():
                continue
            if entry.starts >= self.pipeline.max_attempts and entry.records == 1:
                self._abandon(entry, counts)
            elif entry.starts >= self.pipeline.max_attempts:
                middle = entry.start + entry.records // 2
                halves = [
                    Slice(entry.partition, f"{entry.batch}.0", entry.start, middle),
                    Slice(entry.partition, f"{entry.batch}.1", middle, entry.end),
                ]
                self._again(entry, fence, halves, counts)
                counts.split += 1
            else:
                whole = [Slice(entry.partition, entry.batch, entry.start, entry.end)]
                self._again(entry, fence, whole, counts)
        return counts

    def _read(self, entry: InFlight) -> list[Any] | None:
        records, complete = read_range(
            self.consumer,
            self.space.topic,
            entry.partition,
            entry.start,
            entry.end,
            self.pipeline.max_seconds,
        )
        if complete:
            return records
        logger.warning(
            "%s partition %d: could not read [%d, %d) again for batch %s within %.1f s (or "
            "retention deleted it); trying again next cycle",
            self.space, entry.partition, entry.start, entry.end, entry.batch,
            self.pipeline.max_seconds, extra=at(entry.partition, entry.start, entry.end - 1),
        )  # fmt: skip
        return None

    def _messages(self, records: Sequence[Any]) -> list[Message]:
        """Decode the records again; those the codec refuses were dead-lettered when first
        read (decoding is deterministic) and are left out."""
        c = self.pipeline
        out = []
        for record in records:
            message = decode_or_reason(record, c.cluster, c.codec, c.max_value_bytes, c.max_depth)
            if not isinstance(message, str):
                out.append(message)
        return out

    def _again(self, entry: InFlight, fence: Fence, parts: Sequence[Slice], counts: Counts) -> None:
        records = self._read(entry)
        if records is None:
            return
        # Halves are new batches: due after the budget. A batch again: later each time.
        due_in = self.due_in(entry.handoffs if len(parts) == 1 else 0)
        status = self.ledger.redrive(self.space, self.token, fence, entry, parts, due_in)
        if status == "finished":  # it finished while we read it
            return
        if status != "redriven":
            raise Refused(status)
        messages = self._messages(records)
        for part in parts:
            batch = [m for m in messages if part.start <= m["offset"] < part.end]
            if not batch:  # nothing to hand off: every record of it was dead-lettered
                self.ledger.finish(self.space, [part])
                continue
            ticket = self.ticket([part])
            try:
                self.dispatcher.hand_off(batch, ticket)
            except RecoverableError:
                _quietly(self.ledger.expedite, self.space, [part])
                raise
            counts.redriven += 1
            counts.records += len(batch)
        logger.warning(
            "%s partition %d: batch %s [%d, %d) did not finish in time (hand-off %d, started "
            "%d times); handed off again%s",
            self.space, entry.partition, entry.batch, entry.start, entry.end,
            entry.handoffs + 1, entry.starts, " in halves" if len(parts) > 1 else "",
            extra=at(entry.partition, entry.start, entry.end - 1),
        )  # fmt: skip

    def _abandon(self, entry: InFlight, counts: Counts) -> None:
        records = self._read(entry)
        if records is None:
            return
        reason = (
            f"stage crashed: batch {entry.batch} started {entry.starts} times and never "
            f"finished (its worker died or hit the hard time limit each time); this record "
            f"alone is what remained"
        )
        valid = {m["offset"] for m in self._messages(records)}
        for record in records:
            if record.offset in valid:
                self.dead_letters.send(record, reason)
                counts.abandoned += 1
        self.dead_letters.flush()
        self.ledger.finish(
            self.space, [Slice(entry.partition, entry.batch, entry.start, entry.end)]
        )
        logger.error(
            "%s partition %d offset %d: %s", self.space, entry.partition, entry.start, reason,
            extra=at(entry.partition, entry.start, entry.end - 1),
        )  # fmt: skip


def _quietly(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except RecoverableError as exc:
        logger.warning("%s failed: %s", getattr(fn, "__name__", fn), exc)
