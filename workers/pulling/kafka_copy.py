"""Kafka's copy of a pipeline's committed offsets, and the way back when Redis lost them.

A pull commits to Kafka, under the pipeline's group id and without joining the group, what
Redis says is committed for the partitions it holds a lease on: at most every
``kafka_commit_seconds`` (per process and thread), only what changed since it last did (and
everything again after an hour: Kafka drops the offsets of a group without members some days
after their last commit). Redis stays the truth. A failing commit is logged, at most every few
minutes, and never fails the pull; it waits at most ``kafka_commit_seconds`` (or the cluster's
``timeout``, if shorter).

When Redis has no offset for a partition (restarted without persistence, a failover to a
lagging replica, a flushed database) the ``Positioner`` asks ``restore`` first: Kafka's copy,
which is never ahead of what the pipeline finished, since it copies Redis.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from workers.config import PipelineConfig
from workers.connections import Connections
from workers.exceptions import OffsetStoreError, RecoverableError
from workers.kafka.group_offsets import GroupOffsets, KafkaGroupOffsets, foreign, writer
from workers.state import copies
from workers.state.keys import Space
from workers.state.offsets import OffsetStore, Position, RedisOffsetStore

logger = logging.getLogger(__name__)

# Unchanged offsets are committed again this often (Kafka's offsets.retention.minutes: 7 days).
REFRESH_SECONDS = 3600.0
# A copy that keeps failing is logged again at most this often.
LOG_EVERY_SECONDS = 300.0

Note = Callable[[Mapping[int, int], int], None]


@dataclass(slots=True)
class CopyState:
    """What one process (thread) copied of one pipeline, kept across its pulls: when it copies
    next, and per partition the (offset, generation, time) it last committed; its failures."""

    next_at: float = float("-inf")
    copied: dict[int, tuple[int, int, float]] = field(default_factory=dict)
    failures: int = 0
    failing_since: float = 0.0
    logged_at: float = float("-inf")


_STATES: dict[tuple[Space, int], CopyState] = {}


def state_for(space: Space) -> CopyState:
    """This thread's ``CopyState`` of ``space`` (Beat pulls of a pipeline share it)."""
    return _STATES.setdefault((space, threading.get_ident()), CopyState())


class KafkaCopy:
    """Copies one pipeline's committed offsets from ``store`` to ``group`` and reads them back.

    ``clock`` is monotonic seconds, ``wall`` epoch seconds; ``note(offsets, at_ms)`` records a
    successful copy (``workers.state.copies``) for ``workers check``.
    """

    def __init__(
        self,
        pipeline: PipelineConfig,
        space: Space,
        store: OffsetStore,
        group: GroupOffsets,
        *,
        interval: float,
        timeout: float,
        state: CopyState | None = None,
        note: Note | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.name = pipeline.name
        self.space = space
        self.store = store
        self.group = group
        self.interval = interval
        self.timeout = timeout
        self.state = state if state is not None else CopyState()
        self.note = note
        self.clock = clock
        self.wall = wall
        self.metadata = writer(space, pipeline.name)

    # -- the copy ---------------------------------------------------------------------------

    def copy(self, partitions: Iterable[int]) -> None:
        """If due, commit to Kafka what Redis says is committed for ``partitions`` (leased by
        the caller) where it changed. Never raises: a failure is logged (rate-limited) and
        tried again ``interval`` later."""
        now, state = self.clock(), self.state
        if now < state.next_at:  # checked first: the long-lived read loop calls this per poll
            return
        parts = sorted(set(partitions))
        if not parts:
            return
        state.next_at = now + self.interval
        try:
            positions = self.store.read(self.space, parts)
            due = {
                p: (pos.offset, pos.generation)
                for p, pos in positions.items()
                if pos.offset is not None and not pos.problem and self._changed(p, pos, now)
            }
            if not due:
                return
            offsets = {p: offset for p, (offset, _) in due.items()}
            self.group.commit(self.space.topic, offsets, self.metadata, self._wait())
        except (RecoverableError, OffsetStoreError) as exc:
            self._failed(exc, now)
            return
        state.copied.update({p: (o, g, now) for p, (o, g) in due.items()})
        self._recovered(now)
        self._note(offsets)

    def commit_now(self, offsets: Mapping[int, int]) -> None:
        """Commit ``offsets`` at once (an operator reset). Raises ``RecoverableError``."""
        self.group.commit(self.space.topic, offsets, self.metadata, self.timeout)
        self._note(offsets)

    def _changed(self, partition: int, position: Position, now: float) -> bool:
        last = self.state.copied.get(partition)
        if last is None or now - last[2] >= REFRESH_SECONDS:
            return True
        return last[:2] != (position.offset, position.generation)

    def _wait(self) -> float:
        return min(self.timeout, self.interval)

    def _note(self, offsets: Mapping[int, int]) -> None:
        if self.note is None:
            return
        try:
            self.note(offsets, int(self.wall() * 1000))
        except (RecoverableError, OffsetStoreError) as exc:  # a statistic: the copy is done
            logger.debug("pipeline %s: the Kafka copy was not noted: %s", self.name, exc)

    def _failed(self, exc: Exception, now: float) -> None:
        state = self.state
        if not state.failures:
            state.failing_since = now
        state.failures += 1
        if state.failures > 1 and now - state.logged_at < LOG_EVERY_SECONDS:
            return
        state.logged_at = now
        again = "" if state.failures == 1 else (
            f" (still failing: {state.failures} attempts in {now - state.failing_since:.0f} s)"
        )  # fmt: skip
        logger.warning(
            "pipeline %s: Kafka's copy of the offsets (group %s) not updated%s: %s; Redis keeps "
            "them and the pull goes on; next attempt in %g s",
            self.name, self.group.group, again, exc, self.interval,
        )  # fmt: skip

    def _recovered(self, now: float) -> None:
        state = self.state
        if state.failures:
            logger.info(
                "pipeline %s: Kafka's copy of the offsets (group %s) updated again after %d "
                "failed attempts in %.0f s",
                self.name, self.group.group, state.failures, now - state.failing_since,
            )  # fmt: skip
            state.failures = 0

    # -- the way back -----------------------------------------------------------------------

    def restore(self, partitions: Sequence[int]) -> dict[int, int]:
        """Kafka's copy of ``partitions`` (which Redis has no offset for), where there is one
        this package wrote (or one without metadata). A copy with another writer's metadata is
        logged and left out: the start policy applies to it. Raises ``RecoverableError`` when
        Kafka cannot be asked: the pull fails and is retried, since without an answer the
        start policy could skip what Kafka's copy would have kept."""
        found = self.group.committed(self.space.topic, partitions, self.timeout)
        usable: dict[int, int] = {}
        for p, committed in sorted(found.items()):
            if foreign(committed, self.space):
                logger.warning(
                    "pipeline %s partition %d: Kafka's offset %d of group %s was committed by "
                    "%r, not by this pipeline: not used (the start policy applies); give each "
                    "pipeline a group id of its own",
                    self.name, p, committed.offset, self.group.group, committed.metadata,
                )  # fmt: skip
            else:
                usable[p] = committed.offset
        return usable

    def restored(self, offsets: Mapping[int, int]) -> None:
        """Log the offsets ``restore`` gave that were stored (as a start policy's would be)."""
        logger.warning(
            "pipeline %s: Redis had no offsets for partitions %s of %s; restored from Kafka "
            "(group %s): %s. Records after them are read again, none is skipped",
            self.name, ", ".join(map(str, sorted(offsets))), self.space.topic, self.group.group,
            ", ".join(f"{p}: {o}" for p, o in sorted(offsets.items())),
        )  # fmt: skip


def kafka_copy_for(
    connections: Connections, pipeline: PipelineConfig, space: Space
) -> KafkaCopy | None:
    """The pipeline's ``KafkaCopy`` on the process's connections (the group id: the pipeline's
    ``group``); None when its ``kafka_commit_seconds`` is None."""
    if pipeline.kafka_commit_seconds is None:
        return None
    settings = connections.settings
    cluster, group = pipeline.cluster, pipeline.group
    ttl = settings.redis.offset_ttl_seconds

    def note(offsets: Mapping[int, int], at_ms: int) -> None:
        copies.note(connections.redis(), space, offsets, at_ms, ttl)

    return KafkaCopy(
        pipeline,
        space,
        RedisOffsetStore(connections.redis(), ttl=ttl),
        KafkaGroupOffsets(
            lambda: connections.group(cluster, group),
            group,
            lambda error: connections.discard("group", f"{cluster}/{group}", error),
        ),
        interval=pipeline.kafka_commit_seconds,
        timeout=settings.cluster(cluster).timeout,
        state=state_for(space),
        note=note,
    )


def copy_reset(
    connections: Connections, pipeline: PipelineConfig, space: Space, offsets: Mapping[int, int]
) -> str:
    """After an operator reset: Kafka's copy set to the offsets Redis now holds, at once (a
    plain commit: Kafka's copy may move backwards). Returns the line to show; never raises
    for Kafka (the reset is done: the pipeline's next pull copies it otherwise)."""
    copy = kafka_copy_for(connections, pipeline, space)
    if copy is None:
        return "Kafka's copy of the offsets is off (kafka_commit_seconds is None)"
    try:
        copy.commit_now(offsets)
    except RecoverableError as exc:
        return (
            f"warning: Kafka's copy (group {pipeline.group}) not updated: {exc}; the "
            "pipeline's next pull copies the new offsets"
        )
    return f"Kafka's copy (group {pipeline.group}) set to the same offsets"
