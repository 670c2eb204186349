"""``chaos.observe``: the pass-through first stage of a chaos run. It counts, per record id, how
often the record reached the first stage, and which task message brought it, in Redis."""

from __future__ import annotations

import os
from typing import Any

import redis

from workers.stages.base import stage
from workers.state.redis_errors import translated

_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["E2E_REDIS_URL"], socket_timeout=10)
    return _client


def seen_key(prefix: str) -> str:
    """Hash: record id → times it reached the first stage. ``:by-task`` (``id|task id`` →
    count) tells a Celery redelivery (same task id) from a second hand-off (a new one);
    ``:deliveries`` counts every record delivered."""
    return f"{prefix}:chaos:seen"


@stage(name="chaos.observe", bind=True, retry_backoff=1, retry_backoff_max=10, max_retries=20)
def observe(self: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Count every message by its record id in one MULTI/EXEC (all or nothing, so a retry
    after a Redis failure counts each delivery once); returns the batch unchanged. Retried
    while Redis is unreachable, as the alarm stages are: this stage must not lose records of
    its own."""
    key = seen_key(os.environ["E2E_PREFIX"])
    with translated("count records reaching the first stage"):
        pipe = _redis().pipeline(transaction=True)
        for message in batch:
            pipe.hincrby(key, message["id"], 1)
            pipe.hincrby(key + ":by-task", f"{message['id']}|{self.request.id}", 1)
        pipe.incrby(key + ":deliveries", len(batch))
        pipe.execute()
    return batch
