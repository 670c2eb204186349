"""The tasks: ``workers.pull`` (Beat), ``workers.consume`` (long-lived), ``workers.supervise``.

They are shared tasks: they exist on every Celery app that imports this module, and each app
has its own settings and connection cache. Retries are declared, never hand-written.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from celery import Task, shared_task

from workers.config import settings_for
from workers.connections import connections_for
from workers.exceptions import ConfigError, OffsetStoreError, RecoverableError
from workers.kafka.deadletter import short_reason
from workers.pulling.engine import pulling, run_cycle, slots_for
from workers.pulling.failures import PULL_FAILURES
from workers.pulling.puller import TopicMissing
from workers.runtime.shutdown import sigterm_stops, stop_requested

logger = logging.getLogger(__name__)

RETRY: dict[str, Any] = {
    "autoretry_for": (RecoverableError,),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
}


@shared_task(name="workers.pull", bind=True, max_retries=3, **RETRY)
def pull(self: Task, pipeline: str) -> dict[str, Any]:
    """One bounded pull cycle of ``pipeline``; returns its summary. Overlapping runs are
    harmless: each reads only the partitions it could lease.

    A pull that keeps failing backs off (``workers.pulling.failures``): until its backoff has
    passed, a pull of that pipeline returns at once (``stopped_by: backoff``). The first failure
    of a kind fails the task (logged with its traceback, a ``RecoverableError`` retried); the
    same kind again returns quietly (``stopped_by: failing``) instead of logging every
    interval."""
    wait = PULL_FAILURES.waiting(pipeline)
    if wait:
        return {"pipeline": pipeline, "stopped_by": "backoff", "retry_in": round(wait, 1)}
    try:
        with pulling(
            self.app, pipeline, task=f"pull:{self.request.id}", stopping=stop_requested
        ) as p:
            summary = run_cycle(self.app, p)
    except ConfigError:
        raise  # a setting to fix: nothing to back off from
    except Exception as exc:
        if PULL_FAILURES.failed(pipeline, exc):
            raise
        return {"pipeline": pipeline, "stopped_by": "failing", "error": short_reason(str(exc))}
    PULL_FAILURES.succeeded(pipeline)
    return summary.as_dict()


@shared_task(name="workers.consume", bind=True, max_retries=10, acks_late=True, **RETRY)
def consume(self: Task, pipeline: str, slot: int) -> dict[str, Any]:
    """Long-lived consumer of ``pipeline`` in ``slot``: pull cycles until ``max_runtime_seconds``
    or worker shutdown, then hand the slot to a fresh task. Returns at once if another consumer
    holds the slot."""
    connections = connections_for(self.app)
    config = connections.settings.pipeline(pipeline)
    if not 0 <= slot < config.concurrency:
        raise ConfigError(
            f"workers.consume slot of pipeline {pipeline!r}",
            slot,
            f"a slot from 0 to {config.concurrency - 1} (the pipeline's concurrency is "
            f"{config.concurrency})",
        )
    slots = slots_for(connections, config)
    token = uuid.uuid4().hex
    if not slots.claim(slot, token):
        return {"pipeline": pipeline, "slot": slot, "ended_by": "slot_busy"}
    totals = {"cycles": 0, "records": 0, "delivered": 0, "dead_lettered": 0, "batches": 0}
    started = time.monotonic()
    deadline = started + config.max_runtime_seconds
    ended_by = "max_runtime"
    try:
        with (
            sigterm_stops(),
            pulling(
                self.app,
                pipeline,
                task=f"consume:{slot}:{self.request.id}",
                token=token,
                until_caught_up=False,
                stopping=stop_requested,
            ) as puller,
        ):
            while True:
                if stop_requested():
                    ended_by = "shutdown"
                    break
                if time.monotonic() >= deadline:
                    break
                if not slots.claim(slot, token):
                    ended_by = "slot_lost"
                    break
                wait = PULL_FAILURES.waiting(pipeline)
                if wait:
                    _idle(wait, deadline)
                    continue
                try:
                    summary = run_cycle(self.app, puller)
                except (RecoverableError, TopicMissing, OffsetStoreError) as exc:
                    # A long-lived consumer rides through outages: back off, log once per kind.
                    if PULL_FAILURES.failed(pipeline, exc):
                        logger.exception("consumer %s/%d: a pull cycle failed", pipeline, slot)
                    continue
                PULL_FAILURES.succeeded(pipeline)
                totals["cycles"] += 1
                for name in ("records", "delivered", "dead_lettered", "batches"):
                    totals[name] += getattr(summary, name)
                if summary.stopped_by in ("no_partitions", "backlog", "brake"):
                    _idle(config.interval, deadline)
                elif summary.stopped_by == "idle":  # many topics, none with work: look again
                    _idle(min(config.interval, 0.5), deadline)
    except BaseException:
        # A retry (or the supervisor) starts the next consumer; leave it the slot.
        _quietly(slots.hand_over, slot, token)
        raise
    if ended_by != "slot_lost" and slots.hand_over(slot, token):
        # Re-enqueued at once, also at shutdown, so another worker takes over without delay.
        self.app.send_task("workers.consume", args=(pipeline, slot))
    return {"pipeline": pipeline, "slot": slot, "ended_by": ended_by, **totals,
            "seconds": round(time.monotonic() - started, 3)}  # fmt: skip


@shared_task(name="workers.supervise", bind=True)
def supervise(self: Task) -> dict[str, Any]:
    """Start a consumer for every slot of every long-lived pipeline that has none."""
    connections = connections_for(self.app)
    started: list[str] = []
    for name, config in settings_for(self.app).pipelines.items():
        if config.mode != "long_lived":
            continue
        slots = slots_for(connections, config)
        for slot in range(config.concurrency):
            if slots.mark_pending(slot):
                self.app.send_task("workers.consume", args=(name, slot))
                started.append(f"{name}/{slot}")
    if started:
        logger.info("supervisor started consumers: %s", ", ".join(started))
    return {"started": started}


def _idle(seconds: float, deadline: float) -> None:
    """Wait before the next cycle, waking early for a stop request."""
    until = min(time.monotonic() + seconds, deadline)
    while time.monotonic() < until and not stop_requested():
        time.sleep(min(0.1, max(0.0, until - time.monotonic())))


def _quietly(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except RecoverableError as exc:
        logger.warning("%s failed: %s", getattr(fn, "__name__", fn), exc)
