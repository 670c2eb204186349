"""Stand-in stages for the end-to-end tests: they count what reaches them in Redis."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import redis

from workers.connections.redis_clients import redis_client
from workers.stages.base import stage

_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:  # the pipelines' Redis: one server, a Sentinel's master or a cluster
        sentinel_password = os.environ.get("WORKERS_REDIS_SENTINEL_PASSWORD")
        _client = redis_client(os.environ["E2E_REDIS_URL"], sentinel_password=sentinel_password)
    return _client


def seen_key() -> str:
    return os.environ["E2E_PREFIX"] + ":e2e:seen"


@stage(name="e2e.record", bind=True)
def record(self: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Count every message by its value's ``uid`` (or its record id), and which task message
    brought it (a message the Celery broker redelivers keeps its task id; a batch handed off
    twice gets a new one). Returns the batch."""
    pipe = _redis().pipeline(transaction=False)
    for message in batch:
        value = message["value"]
        uid = value.get("uid") if isinstance(value, dict) else None
        pipe.hincrby(seen_key(), uid or message["id"], 1)
        pipe.hincrby(seen_key() + ":by-task", f"{uid or message['id']}|{self.request.id}", 1)
    pipe.incr(seen_key() + ":batches")
    pipe.execute()
    delay = float(os.environ.get("E2E_TASK_DELAY", "0"))
    if delay:
        time.sleep(delay)
    return batch


@stage(name="e2e.maintenance", bind=True)
def maintenance(self: Any, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A user's stage between parse and build: dead-letters events of hosts in maintenance."""
    from workers.stages.letters import dead_letter

    dropped = [e for e in events if e.get("target") == "maintenance"]
    if dropped:
        dead_letter(self.app, [(e, "host in maintenance") for e in dropped])
    return [e for e in events if e.get("target") != "maintenance"]


@stage(name="e2e.fragile", bind=True)
def fragile(self: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A stage with a bug: it raises on any message whose value says ``"fail": true``."""
    for message in batch:
        if message["value"].get("fail"):
            raise ValueError(f"cannot handle {message['value']['uid']}")
    return batch


@stage(name="e2e.killer", bind=True)
def killer(self: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A stage whose process dies (as on a segfault or the OOM killer) on a message whose value
    says ``"kill": true``."""
    if any(message["value"].get("kill") for message in batch):
        os.kill(os.getpid(), signal.SIGKILL)
    return batch


@stage(name="e2e.leaky", bind=True)
def leaky(self: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A stage whose libraries are careless with a secret: they log it, and raise it."""
    import logging

    secret = os.environ["E2E_SECRET"]
    logging.getLogger("careless.library").warning("authenticating with %s", secret)
    if any(message["value"].get("fail") for message in batch):
        raise ValueError(f"authentication with {secret} failed")
    return batch


@stage(name="e2e.strict", bind=True)
def strict(self: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A stage from a bad deploy: it dead-letters every message, until the fixed deploy
    (the key ``<prefix>:e2e:fixed``) is out; then it counts each message as ``record`` does."""
    from workers.stages.letters import dead_letter

    if not _redis().exists(os.environ["E2E_PREFIX"] + ":e2e:fixed"):
        dead_letter(self.app, [(m, "invalid event: the bad deploy refuses it") for m in batch])
        return []
    result: list[dict[str, Any]] = record.run(batch)
    return result
