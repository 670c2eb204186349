"""Kafka's copy of a pipeline's offsets next to Redis's: read for ``workers offsets show`` and
judged for ``workers check``.

The rule, per partition (R: Redis's committed offset, K: Kafka's copy, C: the pulls' record
of their last copy, ``workers.state.copies``):

- K carries another writer's metadata: *foreign* (the group id is shared with something else);
- K is ahead of R, or R is missing while K exists: *ahead* (Redis lost or went back; the next
  pull restores from K, or processes the records between again; none is skipped);
- K is behind R (or missing) and no copy was recorded within ``STALE_INTERVALS`` commit
  intervals plus ``STALE_GRACE_SECONDS``: *stale* (no pull copies it, or its commits fail);
- K behind R with a recent copy is *following* (the copy trails by up to an interval); K = R
  is *in step*. Both are fine.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from workers.config import PipelineConfig
from workers.config.masking import clip
from workers.exceptions import OffsetStoreError, RecoverableError
from workers.kafka.group_offsets import Committed, KafkaGroupOffsets, foreign
from workers.ops.context import Ops
from workers.state import copies
from workers.state.copies import Copied
from workers.state.keys import Space

STALE_INTERVALS = 3
STALE_GRACE_SECONDS = 30.0
SHOWN = 3  # partitions named in one finding; the rest are counted


@dataclass(frozen=True, slots=True)
class Drift:
    """How one partition's copies compare: ``kind`` is ``in_step``, ``following``, ``stale``,
    ``ahead`` or ``foreign``; ``text`` says it for a person (empty when fine)."""

    partition: int
    kind: str
    text: str = ""

    @property
    def problem(self) -> bool:
        return self.kind in ("stale", "ahead", "foreign")


def read_kafka(
    ops: Ops, pipeline: PipelineConfig, partitions: Sequence[int]
) -> dict[int, Committed]:
    """Kafka's committed offsets of the pipeline's group (absent: none). Raises
    ``RecoverableError`` when the cluster does not answer within its ``timeout``."""
    cluster, group = pipeline.cluster, pipeline.group
    reader = KafkaGroupOffsets(lambda: ops.connections.group(cluster, group), group)
    timeout = ops.settings.cluster(cluster).timeout
    return reader.committed(pipeline.topic, partitions, timeout)


def kafka_column(
    ops: Ops, pipeline: PipelineConfig, partitions: Sequence[int]
) -> tuple[dict[int, int], str]:
    """For ``offsets show``: Kafka's copy per partition, and ``on``, ``off`` (the pipeline's
    ``kafka_commit_seconds`` is None) or ``unreadable: <why>``."""
    if pipeline.kafka_commit_seconds is None:
        return {}, "off"
    try:
        found = read_kafka(ops, pipeline, partitions)
    except RecoverableError as exc:
        return {}, f"unreadable: {clip(str(exc), 200)}"
    return {p: c.offset for p, c in found.items()}, "on"


def judge(
    pipeline: PipelineConfig,
    space: Space,
    redis: Mapping[int, int | None],
    kafka: Mapping[int, Committed],
    copied: Mapping[int, Copied],
    now_ms: int,
) -> list[Drift]:
    """The rule of the module docstring, per partition of ``redis`` (every partition)."""
    interval = pipeline.kafka_commit_seconds or 0.0
    stale_ms = (STALE_INTERVALS * interval + STALE_GRACE_SECONDS) * 1000
    out: list[Drift] = []
    for p, r in sorted(redis.items()):
        k, c = kafka.get(p), copied.get(p)
        if k is not None and foreign(k, space):
            out.append(Drift(p, "foreign", f"{p}: written by {clip(str(k.metadata), 80)!r}"))
        elif k is not None and (r is None or k.offset > r):
            shown = "none" if r is None else f"{r:,}"
            out.append(Drift(p, "ahead", f"{p}: Kafka {k.offset:,} > Redis {shown}"))
        elif r is not None and (k is None or k.offset < r):
            if c is not None and now_ms - c.at_ms <= stale_ms:
                out.append(Drift(p, "following"))
                continue
            behind = "no copy" if k is None else f"{r - k.offset:,} behind"
            when = "never" if c is None else f"{max(0, now_ms - c.at_ms) / 1000:.0f} s ago"
            out.append(Drift(p, "stale", f"{p}: {behind}, last copied {when}"))
        elif r is not None:
            out.append(Drift(p, "in_step"))
    return out


_SAYS = {
    "ahead": "Kafka's copy ahead of Redis (Redis lost or went back: the next pull starts from "
    "Kafka's copy or reads those records again; none is skipped)",
    "stale": "Kafka's copy behind Redis and not updated for {late} (no pull copies it, or its "
    "commits fail: see the workers' logs)",
    "foreign": "Kafka's offsets written by something else (give the pipeline a group id of its "
    "own; they are not used to restore)",
}


def check_pipeline(ops: Ops, name: str, partitions: Sequence[int]) -> tuple[str, str]:
    """``(level, detail)`` of the ``workers check`` finding on one pipeline's Kafka copy:
    ``warn`` for stale, ahead or foreign partitions, or when Kafka or Redis cannot be read."""
    return check_topic(ops, ops.pipeline(name), partitions)


def check_topic(ops: Ops, pipeline: PipelineConfig, partitions: Sequence[int]) -> tuple[str, str]:
    """``check_pipeline`` of ``pipeline.topic`` (of a pipeline of one topic, or of one
    narrowed to a topic: ``workers.pulling.topics.narrowed``)."""
    interval = pipeline.kafka_commit_seconds
    if interval is None:
        return "ok", "off (kafka_commit_seconds is None): offsets are in Redis only"
    space = ops.space(pipeline)
    try:
        kafka = read_kafka(ops, pipeline, partitions)
        redis = {p: pos.offset for p, pos in ops.store().read(space, partitions).items()}
        copied = copies.read(ops.redis(), space)
    except (RecoverableError, OffsetStoreError) as exc:
        return "warn", f"group {pipeline.group}: not checked: {clip(str(exc), 200)}"
    drifts = judge(pipeline, space, redis, kafka, copied, int(time.time() * 1000))
    late = f"{STALE_INTERVALS * interval + STALE_GRACE_SECONDS:g} s"
    problems = []
    for kind in ("ahead", "stale", "foreign"):
        found = [d.text for d in drifts if d.kind == kind]
        if found:
            more = f" and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
            says = _SAYS[kind].format(late=late)
            problems.append(f"{says}: partition {'; '.join(found[:SHOWN])}{more}")
    head = f"group {pipeline.group}"
    if problems:
        return "warn", f"{head}: " + "; ".join(problems)
    counts = {kind: sum(1 for d in drifts if d.kind == kind) for kind in ("in_step", "following")}
    if not any(counts.values()):
        return "ok", f"{head}: nothing stored yet"
    return "ok", (
        f"{head}: {counts['in_step']} partition(s) in step, {counts['following']} following "
        f"(copied every {interval:g} s)"
    )
