"""Waiting for a chaos run to drain: every partition's stored offset at its log end, no pipeline
task queued or unacked in the Celery broker, and nothing changing for a while."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from tests.chaos.tasks import seen_key
from workers.state.keys import Space, alarm_key
from workers.state.offsets import RedisOffsetStore

logger = logging.getLogger(__name__)

# kombu's Redis transport keeps a queue's priorities in lists named queue + this + priority.
_PRIORITY_SEP = "\x06\x16"


@dataclass(frozen=True, slots=True)
class Drained:
    drained: bool
    seconds: float
    stored: dict[int, int]
    pending: int  # pipeline task messages still queued or unacked at the end
    restore_blocked: float  # seconds a dead holder of kombu's restore lock stalled redelivery


def stored_offsets(client: redis.Redis, space: Space) -> dict[int, int]:
    return {p: pos.offset for p, pos in RedisOffsetStore(client).stored(space).items()}


def pending_tasks(broker: redis.Redis, queues: Sequence[str], tasks: Sequence[str]) -> int:
    """Messages of the pipeline's tasks waiting in the queues or unacked (taken by a worker
    and not yet acknowledged: running, or held by a dead worker until the visibility timeout)."""
    bodies: list[Any] = []
    for queue in queues:
        for name in [queue, *(f"{queue}{_PRIORITY_SEP}{p}" for p in (3, 6, 9))]:
            bodies.extend(broker.lrange(name, 0, -1))
    bodies.extend(json.loads(raw)[0] for raw in broker.hvals("unacked"))
    count = 0
    for body in bodies:
        message = json.loads(body) if isinstance(body, (bytes, str)) else body
        if message.get("headers", {}).get("task") in tasks:
            count += 1
    return count


def restore_blocked(broker: redis.Redis, visibility: float) -> bool:
    """kombu's restore lock is held while an unacknowledged message is overdue by more than a
    restore period: its holder is gone (see celeryconfig_chaos)."""
    oldest = broker.zrange("unacked_index", 0, 0, withscores=True)
    overdue = bool(oldest) and time.time() - oldest[0][1] > visibility + 5
    return overdue and bool(broker.exists("unacked_mutex"))


def wait_drained(
    client: redis.Redis, broker: redis.Redis, *, space: Space, log_end: Mapping[int, int],
    queues: Sequence[str], tasks: Sequence[str], timeout: float, settle: float,
    visibility: float, tick: Callable[[], None] = lambda: None,
) -> Drained:  # fmt: skip
    """Block until drained (True) or ``timeout`` (False). ``seconds`` is when the last change
    was seen (the drain time, without the settling wait). ``tick`` runs every second."""
    started = time.monotonic()
    last: Any = None
    stable_since = started
    stored: dict[int, int] = {}
    pending = -1
    blocked = 0.0
    shown = started
    while True:
        tick()
        now = time.monotonic()
        try:
            stored = stored_offsets(client, space)
            pending = pending_tasks(broker, queues, tasks)
            blocked += 1.0 if restore_blocked(broker, visibility) else 0.0
            progress = (
                sorted(stored.items()), client.get(seen_key(space.prefix) + ":deliveries"),
                sorted(client.hgetall(alarm_key(space.prefix, "alarm-stats")).items()), pending,
            )  # fmt: skip
        except redis.RedisError as exc:
            logger.warning("drain check failed: %r", exc)
            progress = None
        if progress != last:
            last, stable_since = progress, now
        at_end = all(stored.get(p, 0) >= end for p, end in log_end.items())
        if now - shown >= 30:
            shown = now
            behind = sum(max(0, end - stored.get(p, 0)) for p, end in log_end.items())
            logger.info("draining: %d records behind, %d task messages pending", behind, pending)
        if progress is not None and at_end and pending == 0 and now - stable_since >= settle:
            return Drained(True, round(stable_since - started, 1), stored, pending, blocked)
        if now - started > timeout:
            return Drained(False, round(now - started, 1), stored, pending, blocked)
        time.sleep(1.0)
