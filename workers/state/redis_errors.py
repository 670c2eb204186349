"""Where redis-py errors enter the package: translated into its exception tree, cause kept."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis

from workers.exceptions import OffsetStoreError, RecoverableError


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Connection trouble becomes ``RecoverableError`` (retry later); anything else from Redis
    becomes ``OffsetStoreError``."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise RecoverableError(f"cannot {what}: {exc}") from exc
    except redis.RedisError as exc:
        raise OffsetStoreError(f"cannot {what}: {exc}") from exc
