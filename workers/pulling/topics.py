"""The topics a pipeline of many reads (``topics`` or ``topic_pattern``), looked up again every
``topics_refresh_seconds``.

A look asks the cluster for every topic it has (one metadata request), keeps those listed or
matching the pattern (whole names, as Kafka's own pattern subscriptions do) and never Kafka's
internal topics (``__``) or a pipeline's dead-letter topic, then records them in the registry
(``workers.state.topics``): topics that appeared since the last look are logged and start at
``new_topic_start`` where nothing is stored; topics gone from the cluster are logged and dropped
(their stored offsets are kept; see the README on a topic deleted and created again).

Looks are cached per process and pipeline: a Beat pull is one task, and most pulls of a busy
schedule must not each ask the cluster for every topic.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from workers.config import PipelineConfig, Settings, StartPolicy
from workers.kafka.consumer import Consumer
from workers.state.topics import TopicRegistry

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Topic:
    """One topic of the pipeline, and where its partitions without a stored offset start."""

    name: str
    start: StartPolicy


@dataclass(slots=True)
class _Look:
    at: float
    topics: list[Topic]


# (cluster, group, pipeline) -> the last look, in this process.
_LOOKS: dict[tuple[str, str, str], _Look] = {}
# Listed topics already reported missing, in this process (reported once each).
_MISSING: set[tuple[str, str]] = set()


def narrowed(pipeline: PipelineConfig, topic: str, start: StartPolicy | None = None
             ) -> PipelineConfig:  # fmt: skip
    """``pipeline`` as a pipeline of ``topic`` alone (unchanged for a pipeline of one topic),
    its partitions without a stored offset starting at ``start`` (default: its own)."""
    if not pipeline.multi:
        return pipeline
    return dataclasses.replace(
        pipeline, topic=topic, topics=(), topic_pattern="", start=start or pipeline.start
    )


def dead_letter_topics(settings: Settings) -> frozenset[str]:
    """Every pipeline's dead-letter topic: no pattern ever reads one."""
    return frozenset(p.dead_letter_topic for p in settings.pipelines.values())


def matching(pipeline: PipelineConfig, names: Iterable[str], exclude: Collection[str]) -> list[str]:
    """The topics among ``names`` the pipeline reads, sorted; never an internal topic (``__``)
    nor one in ``exclude`` (the dead-letter topics), whatever the pattern."""
    if pipeline.topic_pattern:
        rx = re.compile(pipeline.topic_pattern)
        found = [n for n in names if rx.fullmatch(n)]
    else:
        wanted = set(pipeline.topics or (pipeline.topic,))
        found = [n for n in names if n in wanted]
    return sorted(n for n in found if not n.startswith("__") and n not in exclude)


class TopicSource:
    """The pipeline's topics now, from the cache or a fresh look."""

    def __init__(
        self,
        pipeline: PipelineConfig,
        consumer: Consumer,
        registry: TopicRegistry,
        exclude: Collection[str] = (),
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.pipeline = pipeline
        self.consumer = consumer
        self.registry = registry
        self.exclude = frozenset(exclude)
        self.clock = clock
        self.wall_ms = wall_ms
        self._key = (pipeline.cluster, pipeline.group, pipeline.name)

    def current(self) -> list[Topic]:
        """The topics, looked up again when the last look is ``topics_refresh_seconds`` old
        (or was marked stale). Raises what the consumer or the registry raise."""
        look = _LOOKS.get(self._key)
        now = self.clock()
        if look is None or now - look.at >= self.pipeline.topics_refresh_seconds:
            look = _LOOKS[self._key] = _Look(now, self._look())
        return look.topics

    def stale(self) -> None:
        """The next ``current`` looks again (a topic was found missing meanwhile)."""
        _LOOKS.pop(self._key, None)

    def _look(self) -> list[Topic]:
        p = self.pipeline
        names = self.consumer.topics()
        found = matching(p, names, self.exclude)
        self._report_missing(names)
        seen = self.registry.register(found, self.wall_ms())
        for name in seen.added:
            if not seen.initial[name]:
                logger.info(
                    "pipeline %s: found topic %s on cluster %s; where nothing is stored, its "
                    "partitions start at %s", p.name, name, p.cluster, p.new_topic_start,
                )  # fmt: skip
        for name in seen.dropped:
            logger.warning(
                "pipeline %s: topic %s is gone from cluster %s and is no longer read (its "
                "stored offsets are kept)", p.name, name, p.cluster,
            )  # fmt: skip
        return [Topic(n, p.start if seen.initial[n] else p.new_topic_start) for n in found]

    def _report_missing(self, names: Collection[str]) -> None:
        """A listed topic that does not exist is read once created; said once per process."""
        for topic in self.pipeline.topics:
            key = (self.pipeline.name, topic)
            if topic in names:
                _MISSING.discard(key)
            elif key not in _MISSING:
                _MISSING.add(key)
                logger.warning(
                    "pipeline %s: topic %s does not exist on cluster %s; it is read once "
                    "created", self.pipeline.name, topic, self.pipeline.cluster,
                )  # fmt: skip
