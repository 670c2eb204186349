"""The topics of a pipeline now, for operator commands: its one ``topic``, or for a pipeline
of many (``topics`` / ``topic_pattern``) those on the cluster now (``workers.pulling.topics.
matching``: never an internal topic nor a dead-letter topic).

Everything kept in Redis is per (cluster, group, topic), as for a pipeline of one topic: a
command works on one topic of a pipeline of many through the pipeline *narrowed* to it
(``workers.pulling.topics.narrowed``), with the code written for one topic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from workers.config import PipelineConfig, StartPolicy
from workers.ops.context import Ops, OpsError
from workers.pulling.topics import dead_letter_topics, matching, narrowed
from workers.state.keys import pipeline_key
from workers.state.topics import INITIAL, TopicRegistry


def topics_now(ops: Ops, pipeline: PipelineConfig) -> list[str]:
    """The topics the pipeline reads now, sorted: ``[topic]`` for a pipeline of one (whether
    or not it exists); for a pipeline of many, those on its cluster now (a fresh metadata
    request), possibly none."""
    if not pipeline.multi:
        return [pipeline.topic]
    names = ops.connections.consumer(pipeline.cluster).topics()
    return matching(pipeline, names, dead_letter_topics(ops.settings))


def missing_listed(pipeline: PipelineConfig, found: list[str]) -> list[str]:
    """The listed topics (``topics``) not found on the cluster: read once created."""
    return sorted(set(pipeline.topics) - set(found))


@dataclass(frozen=True, slots=True)
class Registered:
    """What the pipeline's pulls recorded of its topics (``workers.state.topics``): each topic
    found and its mark (``initial`` or the time found); ``looked``: a pull has looked."""

    known: Mapping[str, str]
    looked: bool


def registered(ops: Ops, pipeline: PipelineConfig) -> Registered:
    """The registry of a pipeline of many; empty for a pipeline of one topic."""
    if not pipeline.multi:
        return Registered({}, False)
    key = pipeline_key(ops.settings.redis.key_prefix, pipeline.cluster, pipeline.group,
                       pipeline.name)  # fmt: skip
    registry = TopicRegistry(ops.redis(), key)
    return Registered(registry.known(), registry.looked())


def start_of(pipeline: PipelineConfig, topic: str, found: Registered) -> StartPolicy:
    """Where the partitions of ``topic`` without a stored offset start: ``start`` for a topic
    found at the pipeline's first look (or before any look: the first look finds it),
    ``new_topic_start`` for one found later or not yet found by a pipeline that has looked."""
    if not pipeline.multi:
        return pipeline.start
    mark = found.known.get(topic)
    if mark == INITIAL or (mark is None and not found.looked):
        return pipeline.start
    return pipeline.new_topic_start


def one_topic(ops: Ops, pipeline: PipelineConfig, topic: str) -> PipelineConfig:
    """``--topic NAME`` of ``pipeline``: the pipeline narrowed to it, or ``OpsError`` when it
    is not the pipeline's topic (one topic) or not one of its topics now (many)."""
    if not pipeline.multi:
        if topic != pipeline.topic:
            raise OpsError(
                f"pipeline {pipeline.name!r} reads topic {pipeline.topic!r}, not {topic!r}"
            )
        return pipeline
    if topic not in topics_now(ops, pipeline):
        raise OpsError(
            f"topic {topic!r} is not one of the topics of pipeline {pipeline.name!r} now "
            f"({pipeline.source} on cluster {pipeline.cluster!r})"
        )
    return narrowed(pipeline, topic, start_of(pipeline, topic, registered(ops, pipeline)))


def every_topic(ops: Ops, pipeline: PipelineConfig) -> list[PipelineConfig]:
    """The pipeline narrowed to each of its topics now (itself, for a pipeline of one)."""
    if not pipeline.multi:
        return [pipeline]
    names = topics_now(ops, pipeline)
    found = registered(ops, pipeline) if names else Registered({}, False)
    return [narrowed(pipeline, t, start_of(pipeline, t, found)) for t in names]
