"""Wiring: pullers built from the settings and the process's connection cache.

This is the boundary where kafka-python errors become ``RecoverableError`` (and the broken
consumer is dropped from the cache); the logic modules below it take their seams as arguments.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from kafka.errors import KafkaError

from workers.config import PipelineConfig, Settings
from workers.connections import Connections, connections_for
from workers.exceptions import ConfigError, RecoverableError
from workers.kafka.deadletter import DeadLetters
from workers.metrics import record
from workers.pulling.cycle import Summary
from workers.pulling.fanout import Fanout, FanoutSummary, busy
from workers.pulling.handoff import CeleryDispatcher, stage_limit
from workers.pulling.kafka_copy import kafka_copy_for
from workers.pulling.puller import Puller
from workers.pulling.topics import TopicSource, dead_letter_topics
from workers.runtime.logformat import log_context
from workers.state.brake_redis import RedisBrake
from workers.state.keys import Space, pipeline_key
from workers.state.leases import Owner, RedisLeases
from workers.state.ledger_redis import RedisLedger
from workers.state.offsets import RedisOffsetStore
from workers.state.slots import Slots
from workers.state.stats import add_cycle
from workers.state.topics import IdleProbe, TopicRegistry

logger = logging.getLogger(__name__)


def space_for(settings: Settings, pipeline: PipelineConfig) -> Space:
    """The Redis key space of a pipeline's offsets, leases and slots."""
    return Space(settings.redis.key_prefix, pipeline.cluster, pipeline.group, pipeline.topic)


def slots_for(connections: Connections, pipeline: PipelineConfig) -> Slots:
    """The consumer slots of a long-lived pipeline. A queued consumer task that has not started
    after ``pending_ttl`` is assumed lost, and the supervisor enqueues another."""
    settings = connections.settings
    pending_ttl = max(60.0, 6 * settings.supervise_interval)
    space = space_for(settings, pipeline)
    return Slots(connections.redis(), space, pipeline.lease_ttl_seconds, pending_ttl)


def redrive_budget(app: Any, pipeline: PipelineConfig) -> float:
    """Seconds a batch's stages have to finish it before it is handed off again: the
    pipeline's ``redrive_seconds``, or twice the sum of its stages' hard time limits (the
    stages running one after another, and as long again waiting in queues). Raises
    ``ConfigError`` when a stage has no time limit to derive it from."""
    if pipeline.redrive_seconds is not None:
        return pipeline.redrive_seconds
    total = 0.0
    for name in pipeline.tasks:
        limit = stage_limit(app, name, "time_limit")
        if limit is None:
            raise ConfigError(
                f"workers_pipelines.{pipeline.name}.redrive_seconds",
                None,
                f"seconds, because stage {name!r} has no time_limit to derive it from (give "
                "the task a time_limit, set task_time_limit, or set redrive_seconds)",
            )
        total += limit
    return 2 * total


def check_stages(app: Any, settings: Settings) -> None:
    """At worker start: every pipeline's budget can be derived, and every stage registered
    here runs on ``workers.stages.base.Stage`` (a plain task would never finish its batches)."""
    from workers.stages.base import Stage

    for pipeline in settings.pipelines.values():
        redrive_budget(app, pipeline)
        for i, name in enumerate(pipeline.tasks):
            task = app.tasks.get(name)
            if task is not None and not isinstance(task, Stage):
                raise ConfigError(
                    f"workers_pipelines.{pipeline.name}.tasks[{i}]",
                    name,
                    "a task declared with @workers.stages.stage or base=workers.stages.Stage "
                    "(it finishes batches in the ledger; see 'Writing your own stage')",
                )


@contextmanager
def kafka_boundary(connections: Connections, cluster: str, what: str) -> Iterator[None]:
    """Translate kafka-python errors; the consumer that saw one is replaced on next use."""
    try:
        yield
    except KafkaError as exc:
        connections.discard("consumer", cluster, exc)
        raise RecoverableError(f"{what}: {exc!r}") from exc


def _puller(
    app: Any,
    connections: Connections,
    pipeline: PipelineConfig,
    *,
    task: str,
    token: str | None,
    until_caught_up: bool,
    stopping: Callable[[], bool],
) -> Puller:
    """The puller of one topic (``pipeline.topic``) on this process's connections."""
    settings = connections.settings
    client = connections.redis()
    cluster = pipeline.cluster
    space = space_for(settings, pipeline)
    return Puller(
        pipeline,
        space=space,
        store=RedisOffsetStore(client, ttl=settings.redis.offset_ttl_seconds),
        ledger=RedisLedger(client, ttl=settings.redis.offset_ttl_seconds),
        budget=redrive_budget(app, pipeline),
        brake=RedisBrake(client),
        leases=RedisLeases(client, Owner.current(task), pipeline.lease_ttl_seconds, token=token),
        consumer=connections.consumer(cluster),
        dispatcher=CeleryDispatcher(app, pipeline, stamp=settings.metrics.port is not None),
        dead_letters=DeadLetters(
            lambda: connections.producer(cluster),
            cluster,
            pipeline.dead_letter_topic,
            timeout=settings.cluster(cluster).timeout * 5,
        ),
        stopping=stopping,
        until_caught_up=until_caught_up,
        kafka_copy=kafka_copy_for(connections, pipeline, space),
    )


def _fanout(
    app: Any, connections: Connections, pipeline: PipelineConfig, make: Callable[..., Puller],
    stopping: Callable[[], bool],
) -> Fanout:  # fmt: skip
    """The cycles of a pipeline over many topics (``workers.pulling.fanout``)."""
    settings = connections.settings
    client = connections.redis()
    consumer = connections.consumer(pipeline.cluster)
    registry = TopicRegistry(
        client,
        pipeline_key(settings.redis.key_prefix, pipeline.cluster, pipeline.group, pipeline.name),
        ttl=settings.redis.offset_ttl_seconds,
    )
    return Fanout(
        pipeline,
        source=TopicSource(pipeline, consumer, registry, exclude=dead_letter_topics(settings)),
        probe=IdleProbe(client),
        consumer=consumer,
        make=make,
        space_of=lambda topic: dataclasses.replace(space_for(settings, pipeline), topic=topic),
        after=lambda puller, summary: _counted(app, puller, summary),
        stopping=stopping,
    )


@contextmanager
def pulling(
    app: Any,
    pipeline_name: str,
    *,
    task: str = "",
    token: str | None = None,
    until_caught_up: bool = True,
    stopping: Callable[[], bool] = lambda: False,
    leave: bool = True,
) -> Iterator[Puller | Fanout]:
    """A puller for one pipeline on this process's connections (a ``Fanout`` for a pipeline
    of many topics). Its leases are released on exit, also after an error, so another worker
    can take over at once."""
    connections = connections_for(app)
    pipeline = connections.settings.pipeline(pipeline_name)
    cluster = pipeline.cluster
    token = token or uuid.uuid4().hex  # one owner for every topic of the pipeline

    def make(config: PipelineConfig) -> Puller:
        # Over many topics, each topic's cycle ends once caught up, long-lived or not: the
        # consumer then moves on to the next topic with work.
        return _puller(
            app, connections, config, task=task, token=token,
            until_caught_up=until_caught_up or pipeline.multi, stopping=stopping,
        )  # fmt: skip

    with (
        log_context(pipeline=pipeline.name, topic=pipeline.topic or pipeline.source),
        kafka_boundary(connections, cluster, f"pipeline {pipeline.name!r}"),
    ):
        if pipeline.multi:
            yield _fanout(app, connections, pipeline, make, stopping)
            return  # each topic's leases are given back after its cycle
        puller = make(pipeline)
        try:
            yield puller
        finally:
            try:
                puller.release(leave=leave)
            except RecoverableError as exc:  # they expire by themselves
                logger.warning("pipeline %s: leases not released: %s", pipeline.name, exc)


def _counted(app: Any, puller: Puller, summary: Summary) -> None:
    """A topic's cycle, added to the pipeline's counters (``workers.state.stats``) and to the
    worker's metrics (``workers.metrics``)."""
    record.pull_cycle(summary)
    add_cycle(connections_for(app).redis(), puller.space, summary)


def run_cycle(app: Any, puller: Puller | Fanout) -> Summary | FanoutSummary:
    """One pull cycle, counted (each topic's, for a pipeline of many topics). A Beat pull of
    one topic whose partitions are all idle (``workers.pulling.fanout.busy``) takes no lease
    and reads nothing: its summary says ``stopped_by: idle``."""
    if isinstance(puller, Fanout):
        return puller.cycle()
    if puller.until_caught_up and not puller.held and _idle(app, puller):
        summary = Summary(puller.pipeline.name, stopped_by="idle")
        record.pull_cycle(summary)
        return summary
    summary = puller.cycle()
    _counted(app, puller, summary)
    return summary


def _idle(app: Any, puller: Puller) -> bool:
    parts = puller.consumer.partitions_for_topic(puller.space.topic)
    if not parts:
        return False  # the cycle says why (``TopicMissing``)
    probe = IdleProbe(connections_for(app).redis())
    return not busy(probe, puller.consumer, {puller.space: sorted(parts)})
