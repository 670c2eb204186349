"""Pull counters per pipeline, for operators (``workers lag``, the demo): a Redis hash.

Counters are added after each pull cycle (``brake_trips`` by the dead-letter brake's script);
they are statistics, not a ledger. The stored
offsets stay the truth of what was read (a cycle cut short by a crash may have committed
batches it never counted).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from redis.exceptions import RedisClusterException

from workers.state.keys import Space

logger = logging.getLogger(__name__)

COUNTERS = (
    "cycles",
    "records",
    "delivered",
    "dead_lettered",
    "batches",
    "bytes",
    "redriven",
    "split",
    "abandoned",
    "brake_trips",
)


def add_cycle(client: redis.Redis, space: Space, summary: Any) -> None:
    """Add one cycle's ``Summary`` to the pipeline's counters; a failure is logged, not raised
    (counters must never fail a pull that already committed)."""
    values = {name: int(getattr(summary, name, 0)) for name in COUNTERS if name != "cycles"}
    if not any(values.values()):
        return
    key = space.key("stats")
    try:
        with client.pipeline(transaction=False) as pipe:
            pipe.hincrby(key, "cycles", 1)
            for name, value in values.items():
                if value:
                    pipe.hincrby(key, name, value)
            pipe.hset(key, "last_ms", int(time.time() * 1000))
            pipe.execute()
    except (redis.RedisError, RedisClusterException) as exc:
        logger.warning("%s: cannot add pull counters: %s", space, exc)


def read(client: redis.Redis, space: Space) -> dict[str, int]:
    """The pipeline's counters (zero where never counted) and ``last_ms``, the time of the
    last cycle that read records (0: none yet)."""
    raw = client.hgetall(space.key("stats"))
    found = {_text(k): int(v) for k, v in raw.items()}
    return {name: found.get(name, 0) for name in (*COUNTERS, "last_ms")}


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
