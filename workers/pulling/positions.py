"""Where reading starts: start policies, out-of-range repair and operator resets.

All offsets here are the *next* record to read. A partition with nothing stored gets its start
from the pipeline's policy, stored at once (fenced) so it cannot drift between pulls. A stored
offset outside the log (below the log start after retention, or past the end as the broker
reports on fetch) is moved by the out-of-range policy, and the records skipped are logged and
counted. Resets set chosen partitions to ``earliest``, ``latest``, an offset or a time.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import arrow
from kafka import TopicPartition
from kafka.errors import OffsetOutOfRangeError

from workers.config import StartPolicy
from workers.config.timeparse import parse_time, to_millis
from workers.exceptions import Fenced, OffsetStoreError
from workers.kafka.consumer import Consumer
from workers.runtime.logformat import at
from workers.state.keys import Space
from workers.state.leases import Lease
from workers.state.offsets import MAX_OFFSET, Checkpoint, OffsetStore, Position

if TYPE_CHECKING:
    from workers.pulling.kafka_copy import KafkaCopy

logger = logging.getLogger(__name__)


def _tps(topic: str, partitions: Iterable[int]) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in partitions]


def edges(consumer: Consumer, topic: str, partitions: Sequence[int]) -> dict[int, tuple[int, int]]:
    """(log start, log end) per partition."""
    tps = _tps(topic, partitions)
    starts = consumer.beginning_offsets(tps)
    ends = consumer.end_offsets(tps)
    return {tp.partition: (starts[tp], ends[tp]) for tp in tps}


def offsets_at(
    consumer: Consumer, topic: str, partitions: Sequence[int], when: arrow.Arrow
) -> dict[int, int]:
    """The first offset at or after ``when`` per partition; a time past the end maps to the end."""
    tps = _tps(topic, partitions)
    found = consumer.offsets_for_times({tp: to_millis(when) for tp in tps})
    # No record at or after that time: None, or (in the protocol's terms) a result whose
    # timestamp is -1, "unknown". A real match always carries its record's timestamp.
    missing = [tp for tp in tps if found.get(tp) is None or found[tp].timestamp < 0]
    ends = consumer.end_offsets(missing) if missing else {}
    return {tp.partition: (ends[tp] if tp in ends else found[tp].offset) for tp in tps}


def start_offsets(
    consumer: Consumer,
    topic: str,
    partitions: Sequence[int],
    policy: StartPolicy,
    now: arrow.Arrow | None = None,
) -> dict[int, int]:
    """Where partitions with no stored offset start, by the pipeline's start policy."""
    if policy.kind == "time":
        return offsets_at(consumer, topic, partitions, parse_time(policy.at, now))
    bounds = edges(consumer, topic, partitions)
    if policy.kind == "earliest":
        return {p: start for p, (start, _) in bounds.items()}
    if policy.kind == "latest":
        return {p: end for p, (_, end) in bounds.items()}
    # latest-N: N records before the end, never before the log start.
    return {p: max(start, end - policy.n) for p, (start, end) in bounds.items()}


_OFFSET = re.compile(r"[0-9]+")


def target_offsets(
    consumer: Consumer,
    topic: str,
    partitions: Sequence[int],
    target: str,
    now: arrow.Arrow | None = None,
) -> dict[int, int]:
    """Offsets for a reset target: ``earliest``, ``latest``, an offset (digits), or a time.

    A time is ISO 8601, a relative form (``-1h``) or ``@`` + epoch seconds/milliseconds (plain
    digits mean an offset). Raises ``ValueError`` for anything else.
    """
    text = target.strip()
    if text in ("earliest", "latest"):
        return start_offsets(consumer, topic, partitions, StartPolicy(text), now)  # type: ignore[arg-type]
    if _OFFSET.fullmatch(text):
        if len(text) > 20 or int(text) > MAX_OFFSET:
            raise ValueError(f"offset {text[:40]} is beyond the largest offset kept ({MAX_OFFSET})")
        return {p: int(text) for p in partitions}
    when = parse_time(text[1:] if text.startswith("@") else text, now)
    return offsets_at(consumer, topic, partitions, when)


def seek(consumer: Consumer, topic: str, offsets: Mapping[int, int]) -> None:
    """Read ``topic``'s partitions from ``offsets``: assign them when the consumer's assignment
    differs (another user of this thread's consumer may have changed it), and seek only where
    its position is not the offset, so records it already fetched are kept."""
    tps = _tps(topic, sorted(offsets))
    fresh = set(tps) != set(consumer.assignment())
    if fresh:
        consumer.assign(tps)
    for tp in tps:
        if fresh or consumer.position(tp) != offsets[tp.partition]:
            consumer.seek(tp, offsets[tp.partition])


def out_of_range(exc: OffsetOutOfRangeError) -> dict[TopicPartition, int]:
    """The partitions (and fetch positions) the broker reported outside the log."""
    found = exc.args[0] if exc.args else None
    return dict(found) if isinstance(found, dict) else {}


@dataclass(frozen=True, slots=True)
class Repair:
    """An out-of-range offset moved by policy; ``skipped`` records will never be read."""

    partition: int
    stored: int
    log_start: int
    log_end: int
    offset: int
    skipped: int


def repair_for(stored: int, log_start: int, log_end: int, policy: str, partition: int) -> Repair:
    """Where an out-of-range offset goes under ``policy`` (``earliest`` or ``latest``)."""
    offset = log_start if policy == "earliest" else log_end
    skipped = max(0, offset - stored) if stored < offset else 0
    return Repair(partition, stored, log_start, log_end, offset, skipped)


class Positioner:
    """Prepares the leased partitions of one pull: stored offset, or (nothing stored) Kafka's
    copy (``kafka``: ``workers.pulling.kafka_copy``, None when off), or start policy; in range."""

    def __init__(
        self,
        store: OffsetStore,
        consumer: Consumer,
        space: Space,
        token: str,
        start: StartPolicy,
        out_of_range: str = "earliest",
        kafka: KafkaCopy | None = None,
    ) -> None:
        self.kafka = kafka
        self.store = store
        self.consumer = consumer
        self.space = space
        self.token = token
        self.start = start
        self.out_of_range = out_of_range
        # Offsets the last prepare() moved out of range: partition -> offset.
        self.repaired: dict[int, int] = {}
        # Where each log ended when ``prepare`` last looked (the partitions it returned).
        self.ends: dict[int, int] = {}

    def prepare(
        self, leases: Sequence[Lease], now: arrow.Arrow | None = None
    ) -> dict[int, Position]:
        """Positions to read from, for the leases still held (a lost lease is left out)."""
        self.repaired = {}
        self.ends = {}
        by_partition = {lease.partition: lease for lease in leases}
        positions = self.store.read(self.space, by_partition)
        broken = {p: pos for p, pos in positions.items() if pos.problem}
        if broken:
            self.repaired.update(self.repair_broken(broken))
            positions.update(self.store.read(self.space, broken))
        missing = [p for p, pos in positions.items() if pos.offset is None and not pos.problem]
        if missing:  # Kafka's copy first (Redis lost them?), then the start policy
            restored = self.kafka.restore(missing) if self.kafka is not None else {}
            rest = [p for p in missing if p not in restored]
            starts = dict(restored)
            if rest:
                starts.update(start_offsets(self.consumer, self.space.topic, rest, self.start, now))
            checkpoints = [
                Checkpoint(p, starts[p], by_partition[p].epoch, positions[p].generation)
                for p in missing
            ]
            done = self.store.commit(self.space, self.token, checkpoints, mode="init")
            if self.kafka is not None and (kept := [p for p in restored if done[p].ok]):
                self.kafka.restored({p: restored[p] for p in kept})
            positions.update(self.store.read(self.space, missing))
        ready = {p: pos for p, pos in positions.items() if pos.offset is not None}
        if not ready:
            return ready
        bounds = edges(self.consumer, self.space.topic, list(ready))
        self.ends = {p: end for p, (_, end) in bounds.items()}
        for p, pos in list(ready.items()):
            assert pos.offset is not None
            start, end = bounds[p]
            if pos.offset < start:  # retention removed records we never read
                fixed = self.repair(by_partition[p], pos, start, end)
                assert fixed.offset is not None
                ready[p] = fixed
                self.repaired[p] = fixed.offset
        return ready

    def repair_broken(self, broken: Mapping[int, Position]) -> dict[int, int]:
        """Stored state that is not valid (tampered with): an offset that is not one moves by
        the out-of-range policy, a generation that is not one restarts; both as a reset (the
        batches in flight are dropped and read again), logged as an error naming the key."""
        bounds = edges(self.consumer, self.space.topic, sorted(broken))
        targets: dict[int, int] = {}
        for p, pos in broken.items():
            start, end = bounds[p]
            if pos.offset is None:
                targets[p] = start if self.out_of_range == "earliest" else end
            else:
                targets[p] = pos.offset
        self.store.reset(self.space, targets)
        for p, target in sorted(targets.items()):
            logger.error(
                "%s partition %d: %s; repaired as a reset to %d (the '%s' out-of-range policy "
                "for a broken offset; set another with `workers offsets reset`)",
                self.space, p, broken[p].problem, target, self.out_of_range, extra=at(p, target),
            )  # fmt: skip
        return targets

    def repair(self, lease: Lease, position: Position, log_start: int, log_end: int) -> Position:
        """Move an out-of-range offset by policy (fenced), log and count what is skipped."""
        assert position.offset is not None
        fix = repair_for(position.offset, log_start, log_end, self.out_of_range, lease.partition)
        checkpoint = Checkpoint(lease.partition, fix.offset, lease.epoch, position.generation)
        outcome = self.store.commit(self.space, self.token, [checkpoint], mode="repair")
        result = outcome[lease.partition]
        if result.status in ("not_owner", "fenced", "reset"):
            raise Fenced(
                f"{self.space}[{lease.partition}]: out-of-range repair refused ({result.status})",
                result.status,
            )
        if not result.ok:
            raise OffsetStoreError(
                f"{self.space}[{lease.partition}]: out-of-range repair refused ({result.status})"
            )
        if fix.skipped:
            self.store.count_skipped(self.space, lease.partition, fix.skipped)
        logger.warning(
            "%s partition %d: stored offset %d is outside the log [%d, %d); moved to %d by the "
            "'%s' policy, %d records skipped",
            self.space, lease.partition, fix.stored, log_start, log_end, fix.offset,
            self.out_of_range, fix.skipped, extra=at(lease.partition, fix.offset),
        )  # fmt: skip
        return Position(fix.offset, position.generation)

    def on_out_of_range(self, lease: Lease, position: Position) -> Position:
        """Handle the broker's OFFSET_OUT_OF_RANGE for one partition during a poll."""
        bounds = edges(self.consumer, self.space.topic, [lease.partition])[lease.partition]
        return self.repair(lease, position, *bounds)


@dataclass(frozen=True, slots=True)
class ResetRow:
    """One partition of an operator reset: the offset before (None: nothing stored) and after."""

    partition: int
    before: int | None
    after: int


def reset_offsets(
    store: OffsetStore,
    consumer: Consumer,
    space: Space,
    target: str,
    partitions: Sequence[int] | None = None,
    *,
    dry_run: bool = False,
    now: arrow.Arrow | None = None,
) -> list[ResetRow]:
    """Operator reset of chosen partitions (default: all) to ``target`` (see ``target_offsets``).

    Bumps each partition's generation, so a pull that read before the reset cannot write over
    it. ``dry_run`` computes the rows and changes nothing.
    """
    known = consumer.partitions_for_topic(space.topic)
    if not known:
        raise ValueError(f"topic {space.topic!r} does not exist or has no partitions")
    chosen = sorted(known) if partitions is None else sorted(set(partitions))
    unknown = [p for p in chosen if p not in known]
    if unknown:
        raise ValueError(
            f"topic {space.topic!r} has no partitions {unknown}; it has {sorted(known)}"
        )
    after = target_offsets(consumer, space.topic, chosen, target, now)
    if dry_run:
        before = store.read(space, chosen)
    else:
        before = store.reset(space, after)
        logger.warning("%s: offsets reset to %s: %s", space, target, _describe(before, after))
    return [ResetRow(p, before[p].offset, after[p]) for p in chosen]


def _describe(before: Mapping[int, Position], after: Mapping[int, int]) -> str:
    return ", ".join(f"{p}: {before[p].offset} -> {after[p]}" for p in sorted(after))
