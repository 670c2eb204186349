"""Recording and handing off: each batch's slices go into the in-flight ledger (fenced by the
leases) before the batch goes to Celery; a partition with ``max_in_flight`` batches
unfinished is paused. A hand-off the broker refused leaves its batch due at once; a batch
that cannot be encoded loses only the messages that fail alone (dead-lettered). The records
the decoder refused are counted by the dead-letter brake first: when it trips, they are
neither dead-lettered nor recorded, and the cycle ends."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from kafka import TopicPartition

from workers.exceptions import RecoverableError
from workers.kafka.codecs import Message
from workers.metrics import record
from workers.pulling.cycle import Run, Stop
from workers.pulling.handoff import Unencodable, unencodable
from workers.pulling.parts import Parts
from workers.pulling.redrive import Redriver
from workers.pulling.tickets import Ticket
from workers.state.brake import PULL, Limits, Tally, log_still_tripped, log_tripped
from workers.state.ledger import Slice

logger = logging.getLogger(__name__)

# Records that all decoded, reported to the brake (and the pipeline's counters) at the latest
# after this many: a long cycle's counters stay fresh.
REPORT_EVERY = 100_000


class Outbox:
    """Where one puller's batches leave: the ledger first, then the dispatcher."""

    def __init__(self, parts: Parts, redriver: Redriver) -> None:
        self.pipeline = parts.pipeline
        self.space = parts.space
        self.token = parts.token
        self.ledger = parts.ledger
        self.consumer = parts.consumer
        self.dispatcher = parts.dispatcher
        self.dead_letters = parts.dead_letters
        self.brake = parts.brake
        self.limits = Limits.of(parts.pipeline)
        self.redriver = redriver

    def flush(self, run: Run) -> None:
        """Record what was read since the last flush in the ledger, then hand off the batch."""
        dirty = sorted(p for p, c in run.cursor.items() if c != run.reach[p])
        if not dirty:
            return
        self._dead_letters(run)  # confirmed before the ledger moves past them
        started = time.perf_counter()  # the hand-off's time: recording, then sending
        carried = {m["partition"] for m in run.batch}
        batch_id = uuid.uuid4().hex[:16] if run.batch else ""
        slices = [
            Slice(p, batch_id if p in carried else "", run.reach[p], run.cursor[p]) for p in dirty
        ]
        due_in = self.redriver.due_in(0)
        settled = self.ledger.record(self.space, self.token, run.fences, slices, due_in)
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
            self._hand_off(run, kept, self.redriver.ticket(carrying), started)
        if refused:
            # Lost leases or an operator reset: what we read may belong to someone else now.
            logger.warning(
                "pull %s: ledger refused %s; ending the cycle", self.pipeline.name, refused
            )
            raise Stop("reset" if "reset" in refused.values() else "lease_lost")
        self.pause_full(run)

    def braked(self) -> bool:
        """True while the pipeline's dead-letter brake is tripped (named in an error again at
        most every ``REMIND_MS`` over every process)."""
        if self.brake is None:
            return False
        trip, remind = self.brake.check(self.space)
        if trip is not None and remind:
            log_still_tripped(self.pipeline.name, trip, self.limits)
        return trip is not None

    def _dead_letters(self, run: Run) -> None:
        """Report what was read since the last report to the dead-letter brake, then send the
        refused records and wait for the broker. Raises ``Stop("brake")`` (nothing sent,
        nothing recorded: the next pull after a resume reads them again) when it is tripped.
        Records that all decoded are reported with the next refusal, at the end of the
        cycle (``report``), or every ``REPORT_EVERY`` records: one call per cycle, not per
        batch, in the common case; the brake sees the same records in the same order (a
        window full of records that passed starts a new one at the next report either way)."""
        if run.refused or run.tally.seen >= REPORT_EVERY:
            self.report(run)
        refused, run.refused = run.refused, []
        for refusal, reason in refused:
            self.dead_letters.send(refusal, reason)
        run.summary.dead_lettered += len(refused)
        self.dead_letters.flush()
        if refused:
            record.dead_lettered(self.pipeline.name, "pull", (reason for _, reason in refused))

    def report(self, run: Run) -> None:
        """Report the records read and not yet reported to the dead-letter brake (and the
        pipeline's counters); raises ``Stop("brake")`` when it is tripped."""
        tally, run.tally = run.tally, Tally()
        if self.brake is None or self.limits is None or not tally.seen:
            return
        verdict = self.brake.report(self.space, self.limits, PULL, tally, tally.seen)
        if verdict.trip is not None:
            log_tripped(self.pipeline.name, verdict.trip, self.limits)
        if verdict.tripped:
            raise Stop("brake")

    def _hand_off(
        self, run: Run, kept: list[tuple[Message, Any]], ticket: Ticket, started: float
    ) -> None:
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
        record.handed_off(self.pipeline.name, time.perf_counter() - started)

    def _without_unencodable(self, run: Run, kept: list[tuple[Message, Any]]) -> list[Message]:
        """Dead-letter (and confirm) the messages that cannot be encoded alone; the rest."""
        good = []
        reasons = []
        for message, refusal in kept:
            reason = unencodable(message)
            if reason is None:
                good.append(message)
            else:
                self.dead_letters.send(refusal, reason)
                run.summary.dead_lettered += 1
                reasons.append(reason)
        self.dead_letters.flush()
        record.dead_lettered(self.pipeline.name, "pull", reasons)
        return good

    def pause_full(self, run: Run) -> bool:
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
