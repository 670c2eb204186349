"""Wiring: pullers built from the settings and the process's connection cache.

This is the boundary where kafka-python errors become ``RecoverableError`` (and the broken
consumer is dropped from the cache); the logic modules below it take their seams as arguments.
"""

from __future__ import annotations

import logging
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
from workers.pulling.handoff import CeleryDispatcher, stage_limit
from workers.pulling.kafka_copy import kafka_copy_for
from workers.pulling.puller import Puller
from workers.runtime.logformat import log_context
from workers.state.brake_redis import RedisBrake
from workers.state.keys import Space
from workers.state.leases import Owner, RedisLeases
from workers.state.ledger_redis import RedisLedger
from workers.state.offsets import RedisOffsetStore
from workers.state.slots import Slots
from workers.state.stats import add_cycle

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
) -> Iterator[Puller]:
    """A puller for one pipeline on this process's connections. Its leases are released on
    exit, also after an error, so another worker can take over at once."""
    connections = connections_for(app)
    settings = connections.settings
    pipeline = settings.pipeline(pipeline_name)
    client = connections.redis()
    cluster = pipeline.cluster
    with (
        log_context(pipeline=pipeline.name, topic=pipeline.topic),
        kafka_boundary(connections, cluster, f"pipeline {pipeline.name!r}"),
    ):
        puller = Puller(
            pipeline,
            space=space_for(settings, pipeline),
            store=RedisOffsetStore(client, ttl=settings.redis.offset_ttl_seconds),
            ledger=RedisLedger(client, ttl=settings.redis.offset_ttl_seconds),
            budget=redrive_budget(app, pipeline),
            brake=RedisBrake(client),
            leases=RedisLeases(
                client, Owner.current(task), pipeline.lease_ttl_seconds, token=token
            ),
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
            kafka_copy=kafka_copy_for(connections, pipeline, space_for(settings, pipeline)),
        )
        try:
            yield puller
        finally:
            try:
                puller.release(leave=leave)
            except RecoverableError as exc:  # they expire by themselves
                logger.warning("pipeline %s: leases not released: %s", pipeline.name, exc)


def run_cycle(app: Any, puller: Puller) -> Summary:
    """One pull cycle, added to the pipeline's counters (``workers.state.stats``) and to the
    worker's metrics (``workers.metrics``) afterwards."""
    summary = puller.cycle()
    record.pull_cycle(summary)
    add_cycle(connections_for(app).redis(), puller.space, summary)
    return summary
