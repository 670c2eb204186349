"""The status of each pipeline for ``workers offsets show``, ``workers lag`` and the exporter:
of its one topic (``workers.ops.status.PipelineStatus``), or, for a pipeline over many topics,
of each topic it reads now (``ManyStatus``), each kept in Redis as a pipeline of one topic
would keep it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from workers.config import PipelineConfig
from workers.ops.context import Ops
from workers.ops.pipeline_topics import every_topic, missing_listed, one_topic
from workers.ops.status import (
    Flight,
    PartitionStatus,
    PipelineStatus,
    Timestamps,
    topic_status,
)


@dataclass(frozen=True, slots=True)
class ManyStatus:
    """A pipeline over many topics (``topics`` or ``topic_pattern``): one ``PipelineStatus``
    per topic it reads now, each of the pipeline narrowed to that topic
    (``workers.pulling.topics.narrowed``: its ``start`` is where that topic's new
    partitions start), in topic order; ``missing`` the listed topics not on the cluster.
    The properties are the pipeline's totals."""

    pipeline: PipelineConfig
    topics: list[PipelineStatus]
    now_ms: int = 0
    missing: tuple[str, ...] = ()

    @property
    def partitions(self) -> list[PartitionStatus]:
        return [p for t in self.topics for p in t.partitions]

    @property
    def lag(self) -> int | None:
        known = [t.lag for t in self.topics if t.lag is not None]
        return sum(known) if known else None

    @property
    def read(self) -> int:
        return sum(t.read for t in self.topics)

    @property
    def oldest_age(self) -> float | None:
        known = [a for a in (t.oldest_age for t in self.topics) if a is not None]
        return max(known) if known else None

    @property
    def held(self) -> int:
        return sum(t.held for t in self.topics)

    @property
    def flight(self) -> Flight:
        return Flight.total(t.flight for t in self.topics)

    @property
    def started(self) -> bool:
        return any(t.started for t in self.topics)

    @property
    def counters(self) -> dict[str, int]:
        """The topics' pull counters summed; ``last_ms``: the latest pull of any."""
        out: dict[str, int] = {}
        for t in self.topics:
            for name, value in t.counters.items():
                out[name] = max(out.get(name, 0), value) if name == "last_ms" else (
                    out.get(name, 0) + value
                )  # fmt: skip
        return out

    @property
    def tripped(self) -> list[PipelineStatus]:
        """The topics whose dead-letter brake is tripped."""
        return [t for t in self.topics if t.brake is not None]


Status = PipelineStatus | ManyStatus


def per_topic(status: Status) -> list[PipelineStatus]:
    """Each topic's status: the one of a pipeline of one topic, or those of many."""
    return status.topics if isinstance(status, ManyStatus) else [status]


def pipeline_status(
    ops: Ops,
    name: str,
    ages: bool = True,
    timestamps: Timestamps | None = None,
    kafka: bool = False,
    topic: str | None = None,
) -> Status:
    """The status of every partition of pipeline ``name`` (a ``ManyStatus`` for a pipeline
    of many topics: each of its topics now, or ``topic`` alone); ``ages`` reads one record
    per lagging partition for its timestamp, with ``timestamps`` (default
    ``first_timestamps``; the lag exporter passes one that remembers what it read);
    ``kafka`` reads Kafka's copy of the committed offsets too. ``OpsError`` when ``topic``
    is not one of the pipeline's topics now, or the topic of a pipeline of one does not
    exist."""
    pipeline = ops.pipeline(name)
    if not pipeline.multi:
        if topic is not None:
            one_topic(ops, pipeline, topic)
        return topic_status(ops, pipeline, ages, timestamps, kafka)
    configs = [one_topic(ops, pipeline, topic)] if topic else every_topic(ops, pipeline)
    found = []
    for config in configs:
        if not ops.connections.consumer(config.cluster).partitions_for_topic(config.topic):
            continue  # deleted since the look: no longer the pipeline's
        found.append(topic_status(ops, config, ages, timestamps, kafka))
    listed = [] if topic else missing_listed(pipeline, [c.topic for c in configs])
    return ManyStatus(pipeline, found, int(time.time() * 1000), tuple(listed))


def statuses(
    ops: Ops,
    names: Sequence[str] | None = None,
    ages: bool = True,
    kafka: bool = False,
    topic: str | None = None,
) -> list[Status | Exception]:
    """The status per pipeline (of ``topic`` alone, when given), or the ``Exception`` that
    stopped reading it."""
    out: list[Status | Exception] = []
    for name in names or sorted(ops.settings.pipelines):
        try:
            out.append(pipeline_status(ops, name, ages, kafka=kafka, topic=topic))
        except Exception as exc:  # noqa: BLE001 - one broken pipeline must not hide the rest
            out.append(exc)
    return out
