"""Where redis-py errors enter the package: translated into its exception tree, cause kept."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.exceptions import (
    AskError,
    ClusterDownError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)

from workers.exceptions import OffsetStoreError, RecoverableError

# Answers of a server in a failover, a resharding or a restart: a retry a moment later
# reaches the new master, the slot's new node or a loaded script cache. ``ReadOnlyError``: a
# demoted master; ``ClusterDownError`` (and ``MASTERDOWN``): slots without a master for now;
# ``TryAgainError``, ``AskError``/``MovedError``: slots on the move; ``NoScriptError``: a new
# master whose script cache is empty (a pipeline loads scripts only before it runs).
_TRANSIENT = (
    redis.ConnectionError,
    redis.TimeoutError,
    ReadOnlyError,
    ClusterDownError,
    TryAgainError,
    AskError,
    NoScriptError,
)
# A master that refuses writes while too few replicas follow it (``min-replicas-to-write``).
_TRANSIENT_CODES = ("NOREPLICAS",)
# redis-py's cluster errors outside RedisError that mean "no node answers" or "not every
# slot has a master now"; the others (keys of several slots in one call, a command a cluster
# pipeline refuses) are mistakes of the caller.
_CLUSTER_DOWN = (
    "Redis Cluster cannot be connected",
    "All slots are not covered",
    "startup_nodes could not agree",
)


def transient(exc: BaseException) -> bool:
    """True for a Redis error that a retry after a moment may not see again (connection
    trouble, a failover, a cluster's slots moving or uncovered)."""
    if isinstance(exc, _TRANSIENT):
        return True
    if isinstance(exc, redis.ResponseError):
        return str(exc).startswith(_TRANSIENT_CODES)
    if isinstance(exc, SlotNotCoveredError):
        return True
    return isinstance(exc, RedisClusterException) and str(exc).startswith(_CLUSTER_DOWN)


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Connection trouble and failovers become ``RecoverableError`` (retry later); anything
    else from Redis becomes ``OffsetStoreError``."""
    try:
        yield
    except (redis.RedisError, RedisClusterException) as exc:
        if transient(exc):
            raise RecoverableError(f"cannot {what}: {exc}") from exc
        raise OffsetStoreError(f"cannot {what}: {exc}") from exc
