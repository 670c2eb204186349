"""The record of Kafka's copy of a pipeline's offsets: per partition, the offset last committed
to Kafka by a pull and when (a Redis hash, ``<prefix>:kafka:{cluster/group/topic}``).

``workers check`` compares it with Kafka and Redis to tell a copy that follows a few seconds
behind from one that stopped. Like the pull counters it is a statistic, never read to decide
what to process.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from workers.state.keys import Space
from workers.state.offsets import parse_stored
from workers.state.redis_errors import translated


@dataclass(frozen=True, slots=True)
class Copied:
    """The offset last committed to Kafka for one partition, and when (epoch ms)."""

    offset: int
    at_ms: int


def note(client: redis.Redis, space: Space, offsets: Mapping[int, int], at_ms: int,
         ttl: int | None = None) -> None:  # fmt: skip
    """Record that ``offsets`` were committed to Kafka at ``at_ms``. Raises
    ``RecoverableError`` or ``OffsetStoreError`` (from ``redis_errors``)."""
    if not offsets:
        return
    key = space.key("kafka")
    with translated(f"note Kafka's copy of {space}"), client.pipeline(transaction=False) as pipe:
        pipe.hset(key, mapping={str(p): f"{o} {at_ms}" for p, o in offsets.items()})
        if ttl:
            pipe.expire(key, ttl)
        pipe.execute()


def read(client: redis.Redis, space: Space) -> dict[int, Copied]:
    """What was recorded, per partition; fields that do not parse are left out."""
    with translated(f"read the record of Kafka's copy of {space}"):
        raw = client.hgetall(space.key("kafka"))
    found: dict[int, Copied] = {}
    for field, value in raw.items():
        partition = parse_stored(field, 2**31)[0]
        parts = _text(value).split(" ")
        if partition is None or len(parts) != 2:
            continue
        offset, at_ms = parse_stored(parts[0])[0], parse_stored(parts[1], 2**62)[0]
        if offset is not None and at_ms is not None:
            found[partition] = Copied(offset, at_ms)
    return dict(sorted(found.items()))


def _text(raw: Any) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
