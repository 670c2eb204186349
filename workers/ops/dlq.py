"""Dead letters of a pipeline: read them with their reasons, and replay them into the
pipeline's topic once the cause is fixed. A pipeline over many topics replays each letter into
the topic it came from (its ``workers.topic`` header), if that is one of the pipeline's topics
at the time of the replay; other letters are skipped like those whose value was too large.

The replay position (per dead-letter partition) lives in Redis next to the pipeline's own
offsets, written fenced under leases on the dead-letter topic: two replays at once cannot
send the same letters, and a letter is replayed once unless a replay dies between the
broker's confirmation and the position write (then it is sent again: at least once).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kafka.errors import KafkaError

from workers.config import PipelineConfig
from workers.ops.context import Ops, OpsError
from workers.ops.pipeline_topics import topics_now
from workers.pulling.positions import edges, seek
from workers.state.keys import Space
from workers.state.offsets import Checkpoint


@dataclass(frozen=True, slots=True)
class Letter:
    partition: int
    offset: int
    timestamp: int
    reason: str
    source: str  # cluster/topic/partition/offset of the refused record
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    dropped: int | None  # bytes of a value too large to keep, else None

    @property
    def topic(self) -> str | None:
        """The topic of the refused record (the ``workers.topic`` header); None: not given."""
        for k, v in self.headers:
            if k == "workers.topic":
                return v.decode("utf-8", "replace")
        return None

    def as_dict(self, replayed: bool) -> dict[str, Any]:
        value = None if self.value is None else self.value.decode("utf-8", "replace")
        key = None if self.key is None else self.key.decode("utf-8", "replace")
        return {"partition": self.partition, "offset": self.offset, "timestamp": self.timestamp,
                "reason": self.reason, "source": self.source, "key": key, "value": value,
                "value_dropped_bytes": self.dropped, "replayed": replayed}  # fmt: skip


def reason_counts(letters: Sequence[Letter]) -> list[tuple[str, int]]:
    """Letters per reason, the exact text (numbers and values kept: ``at char 17``), most
    common first; equal counts in the order the reasons first appear."""
    return collections.Counter(x.reason for x in letters).most_common()


def letter_of(record: Any) -> Letter:
    headers = tuple((k, bytes(v or b"")) for k, v in (record.headers or ()))
    meta = {k[len("workers.") :]: v.decode("utf-8", "replace") for k, v in headers
            if k.startswith("workers.")}  # fmt: skip
    source = "/".join(meta.get(n, "?") for n in ("cluster", "topic", "partition", "offset"))
    dropped = meta.get("value_dropped")
    return Letter(
        record.partition, record.offset, record.timestamp, meta.get("reason", "(no reason)"),
        source, record.key, record.value, headers, int(dropped) if dropped else None,
    )  # fmt: skip


def replay_space(ops: Ops, pipeline: PipelineConfig) -> Space:
    return Space(ops.settings.redis.key_prefix, pipeline.cluster, f"{pipeline.group}.replay",
                 pipeline.dead_letter_topic)  # fmt: skip


def read_records(
    ops: Ops, cluster: str, topic: str, start: dict[int, int] | None = None,
    limit: int | None = None, timeout: float = 30.0,
) -> list[Any]:  # fmt: skip
    """Records of ``topic`` from ``start`` (default: the log start) to the end, at most
    ``limit``, in offset order per partition. The end is where the broker says it is and a
    poll comes back empty (some brokers report the end of the last batch's first record)."""
    parts = ops.partitions(cluster, topic)
    consumer = ops.connections.consumer(cluster)
    bounds = edges(consumer, topic, parts)
    begin = {p: max(bounds[p][0], (start or {}).get(p, 0)) for p in parts}
    out: list[Any] = []
    # Every partition is polled, also one that looks read to the end: a broker may report the
    # first offset of the last batch + 1 as the end.
    seek(consumer, topic, begin)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (limit is None or len(out) < limit):
        batch = consumer.poll(timeout_ms=300, max_records=500)
        for records in batch.values():
            out.extend(records)
        caught_up = all(consumer.position(tp) >= bounds[tp.partition][1]
                        for tp in consumer.assignment())  # fmt: skip
        if not batch and caught_up:
            break
    # Read order keeps each partition's records in offset order, so any first ``limit`` of
    # them is a prefix per partition: a position written after them skips nothing.
    return out if limit is None else out[:limit]


def read_letters(
    ops: Ops, pipeline: PipelineConfig, start: dict[int, int] | None = None,
    limit: int | None = None,
) -> list[Letter]:  # fmt: skip
    """The pipeline's dead letters (see ``read_records``)."""
    records = read_records(ops, pipeline.cluster, pipeline.dead_letter_topic, start, limit)
    return [letter_of(r) for r in records]


@dataclass(frozen=True, slots=True)
class Replay:
    letters: list[Letter]  # replayed (or, in a dry run, to be replayed)
    unreplayable: list[Letter]  # values dropped as too large, or ``elsewhere``: skipped
    positions: dict[int, int]  # replay position per dead-letter partition afterwards
    # Of ``unreplayable``: letters of a pipeline over many topics whose topic is not one of
    # its topics now (or not named): nowhere to send them.
    elsewhere: list[Letter] = field(default_factory=list)


def replay_positions(ops: Ops, pipeline: PipelineConfig) -> dict[int, int]:
    parts = ops.partitions(pipeline.cluster, pipeline.dead_letter_topic)
    found = ops.store().read(replay_space(ops, pipeline), parts)
    return {p: pos.offset for p, pos in found.items() if pos.offset is not None}


def replay(ops: Ops, pipeline: PipelineConfig, limit: int | None, dry_run: bool) -> Replay:
    """Send the letters after the replay position back to the pipeline's topic (original key,
    value and headers, plus ``workers.replayed_from``), then move the position past them."""
    space = replay_space(ops, pipeline)
    parts = ops.partitions(pipeline.cluster, pipeline.dead_letter_topic)
    leases = ops.leases(pipeline)
    grant = leases.acquire(space, parts)
    try:
        if len(grant.leases) != len(parts):
            raise OpsError(f"another replay of {pipeline.name!r} is running; try again later")
        read = ops.store().read(space, parts)
        start = {p: pos.offset for p, pos in read.items() if pos.offset is not None}
        letters = read_letters(ops, pipeline, start, limit)
        sendable = [x for x in letters if x.dropped is None and x.value is not None]
        topics = set(topics_now(ops, pipeline)) if pipeline.multi and sendable else set()
        elsewhere = [x for x in sendable if pipeline.multi and x.topic not in topics]
        skipped = {id(x) for x in elsewhere}
        good = [x for x in sendable if id(x) not in skipped]
        sent = {id(x) for x in good}
        bad = [x for x in letters if id(x) not in sent]
        after = {**start, **{x.partition: x.offset + 1 for x in letters}}
        if dry_run or not letters:
            return Replay(good, bad, start, elsewhere)
        _send(ops, pipeline, good)
        epochs = {lease.partition: lease.epoch for lease in grant.leases}
        checkpoints = [Checkpoint(p, off, epochs[p], read[p].generation)
                       for p, off in sorted(after.items()) if off != start.get(p)]  # fmt: skip
        outcome = ops.store().commit(space, leases.token, checkpoints)
        lost = [p for p, o in outcome.items() if not o.ok]
        if lost:
            raise OpsError(f"letters sent, but the replay position of partitions {lost} was "
                           "not written (lease lost); a new replay sends them again")  # fmt: skip
        return Replay(good, bad, after, elsewhere)
    finally:
        leases.release(space, grant.leases)


def _send(ops: Ops, pipeline: PipelineConfig, letters: list[Letter]) -> None:
    """Each letter to the pipeline's topic, or (a pipeline over many) to the one it came
    from, which ``replay`` checked."""
    producer = ops.connections.producer(pipeline.cluster)
    futures = []
    for x in letters:
        headers = [(k, v) for k, v in x.headers if not k.startswith("workers.")]
        headers.append(("workers.replayed_from", f"{pipeline.dead_letter_topic}/"
                                                 f"{x.partition}/{x.offset}".encode()))  # fmt: skip
        topic = x.topic if pipeline.multi else pipeline.topic
        assert topic is not None  # replay() keeps only letters of the pipeline's topics
        futures.append(producer.send(topic, value=x.value, key=x.key, headers=headers))
    producer.flush(timeout=60)
    for future in futures:
        try:
            future.get(timeout=60)
        except KafkaError as exc:
            raise OpsError(
                f"replay stopped: the broker refused a letter ({exc}); the replay "
                "position was not moved, so a new replay sends them all again"
            ) from exc
