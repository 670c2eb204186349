"""A pull cycle over many topics: find the topics with work in one look, then run one topic's
cycle (``Puller``) after another.

Most topics of a pipeline over many are quiet. Which have work is read for all of them at
once: one Redis round trip (``IdleProbe``: each partition's stored offset and ledger) and one
offsets request per broker (the log ends). A topic whose partitions all sit at their log end
with nothing in flight costs nothing more: no lease, no seek, no fetch. A Beat pull of a single
topic skips its cycle the same way (``idle``).

The topics with work are read in turn, starting after the one the last cycle of this process
read last, so that a cycle cut short by its time or record limit does not starve the topics
at the end of the list. Each topic's cycle gets what is left of the pipeline's limits, and
gives back its leases when it ends (another worker may read that topic before this one comes
back to it).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition

from workers.config import PipelineConfig
from workers.exceptions import RecoverableError
from workers.kafka.consumer import Consumer
from workers.pulling.cycle import Summary
from workers.pulling.puller import Puller, TopicMissing
from workers.pulling.topics import Topic, TopicSource
from workers.pulling.topics import narrowed as narrowed_to
from workers.runtime.logformat import log_context
from workers.state.keys import Space
from workers.state.topics import IdleProbe

logger = logging.getLogger(__name__)

_COUNTS = ("records", "delivered", "dead_lettered", "batches", "bytes", "redriven")


def busy(probe: IdleProbe, consumer: Consumer, spaces: Mapping[Space, Sequence[int]]) -> set[Space]:
    """The spaces with a partition not idle: something to read (its stored offset is not its
    log end, or nothing is stored) or to re-drive (batches in its ledger)."""
    books = probe.books(spaces)
    tps = [TopicPartition(s.topic, p) for s, parts in spaces.items() for p in parts]
    ends = log_ends(consumer, tps) if tps else {}
    return {
        s
        for s, parts in spaces.items()
        if not all(books[s][p].idle_at(ends[TopicPartition(s.topic, p)]) for p in parts)
    }


def log_ends(consumer: Consumer, tps: Sequence[TopicPartition]) -> Mapping[TopicPartition, int]:
    """The log end of each partition. kafka-python (3.0) leaves out of its request the
    partitions of topics its metadata lost (an ``assign()`` of one topic narrows the metadata
    to it), then raises ``KeyError`` for them: the metadata of every topic is read again, once.
    Raises ``RecoverableError`` when that is not enough."""
    try:
        return consumer.end_offsets(tps)
    except KeyError:
        consumer.topics()  # a metadata request for every topic
    try:
        return consumer.end_offsets(tps)
    except KeyError as exc:
        raise RecoverableError(
            f"no log end for {exc.args[0] if exc.args else '?'} (of {len(tps)} partitions); "
            "its topic is missing from the cluster's metadata"
        ) from exc


@dataclass(slots=True)
class FanoutSummary:
    """What one cycle over many topics did: how many topics the pipeline reads now, how many
    of them were idle, and the cycle of each topic read (``Summary``)."""

    pipeline: str
    topics: int = 0
    idle: int = 0
    cycles: dict[str, Summary] = field(default_factory=dict)
    stopped_by: str = ""
    seconds: float = 0.0

    def total(self, name: str) -> int:
        return sum(int(getattr(s, name)) for s in self.cycles.values())

    @property
    def records(self) -> int:
        return self.total("records")

    @property
    def delivered(self) -> int:
        return self.total("delivered")

    @property
    def dead_lettered(self) -> int:
        return self.total("dead_lettered")

    @property
    def batches(self) -> int:
        return self.total("batches")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (a task's result): the totals, and each topic read with its summary."""
        out: dict[str, Any] = {"pipeline": self.pipeline, "topics": self.topics, "idle": self.idle}
        out.update({name: self.total(name) for name in _COUNTS})
        out["stopped_by"] = self.stopped_by
        out["seconds"] = round(self.seconds, 3)
        out["read"] = {t: s.as_dict() for t, s in sorted(self.cycles.items())}
        return out


# pipeline name -> the topic the last cycle in this process read last.
_LAST: dict[str, str] = {}


def in_turn(names: Sequence[str], last: str | None) -> list[str]:
    """``names`` sorted, starting after ``last`` (wrapping around)."""
    ordered = sorted(names)
    if last is None:
        return ordered
    cut = next((i for i, n in enumerate(ordered) if n > last), 0)
    return ordered[cut:] + ordered[:cut]


class Fanout:
    """Pull cycles of one pipeline over many topics for one owner of leases.

    ``make`` builds the puller of one topic from the pipeline's settings narrowed to that
    topic (``topic``, its start policy, and what is left of the cycle's limits);
    ``space_of`` names a topic's key space; ``after`` is told each topic's cycle (metrics and
    counters).
    """

    def __init__(
        self,
        pipeline: PipelineConfig,
        *,
        source: TopicSource,
        probe: IdleProbe,
        consumer: Consumer,
        make: Callable[[PipelineConfig], Puller],
        space_of: Callable[[str], Space],
        after: Callable[[Puller, Summary], None] = lambda puller, summary: None,
        stopping: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pipeline = pipeline
        self.source = source
        self.probe = probe
        self.consumer = consumer
        self.make = make
        self.space_of = space_of
        self.after = after
        self.stopping = stopping
        self.clock = clock

    def cycle(self) -> FanoutSummary:
        """One bounded pull over the topics with work. Raises ``RecoverableError`` when a
        service fails mid-way (the topics read before keep what they recorded)."""
        started = self.clock()
        out = FanoutSummary(self.pipeline.name)
        topics = {t.name: t for t in self.source.current()}
        out.topics = len(topics)
        work = self._with_work(topics)
        out.idle = len(topics) - len(work)
        deadline = started + self.pipeline.max_seconds
        for name in in_turn(work, _LAST.get(self.pipeline.name)):
            left = deadline - self.clock()
            records = self.pipeline.max_records - out.records
            if self.stopping():
                out.stopped_by = "stop"
            elif left < 0.1:
                out.stopped_by = "max_seconds"
            elif records < 1:
                out.stopped_by = "max_records"
            if out.stopped_by:
                break
            _LAST[self.pipeline.name] = name
            summary = self._read(topics[name], left, records)
            if summary is not None:
                out.cycles[name] = summary
        out.stopped_by = out.stopped_by or ("idle" if not work else "done")
        out.seconds = self.clock() - started
        return out

    def _with_work(self, topics: Mapping[str, Topic]) -> list[str]:
        spaces: dict[Space, Sequence[int]] = {}
        for name in topics:
            parts = self.consumer.partitions_for_topic(name)
            if not parts:  # deleted since the last look: look again next cycle
                self.source.stale()
                continue
            spaces[self.space_of(name)] = sorted(parts)
        return sorted(s.topic for s in busy(self.probe, self.consumer, spaces)) if spaces else []

    def _read(self, topic: Topic, seconds: float, records: int) -> Summary | None:
        narrowed = dataclasses.replace(
            narrowed_to(self.pipeline, topic.name, topic.start),
            max_seconds=min(self.pipeline.max_seconds, seconds),
            max_records=min(self.pipeline.max_records, records),
            batch_size=min(self.pipeline.batch_size, records),
        )
        puller = self.make(narrowed)
        with log_context(topic=topic.name):
            try:
                summary = puller.cycle()
            except TopicMissing:
                self.source.stale()
                return None
            finally:
                try:
                    puller.release()
                except RecoverableError as exc:  # they expire by themselves
                    logger.warning(
                        "pipeline %s, topic %s: leases not released: %s",
                        self.pipeline.name, topic.name, exc,
                    )  # fmt: skip
            self.after(puller, summary)
        return summary
