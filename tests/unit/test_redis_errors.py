"""Which Redis errors are a service briefly away (``RecoverableError``: retry later) and which
are not (``OffsetStoreError``): connection trouble and every answer of a failover, a
resharding or a cluster without a master for some slots are the first kind."""

from __future__ import annotations

import pytest
import redis
from redis.exceptions import (
    AskError,
    ClusterCrossSlotError,
    ClusterDownError,
    CrossSlotTransactionError,
    MasterDownError,
    MovedError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.sentinel import MasterNotFoundError

from workers.exceptions import OffsetStoreError, RecoverableError
from workers.state.redis_errors import translated

RECOVERABLE = [
    redis.ConnectionError("Error 111 connecting"),
    redis.TimeoutError("Timeout reading from socket"),
    redis.AuthenticationError("invalid password"),  # a ConnectionError in redis-py
    MasterNotFoundError("No master found for 'mymaster'"),
    ReadOnlyError("You can't write against a read only replica."),
    redis.ResponseError("NOREPLICAS Not enough good replicas to write."),
    ClusterDownError("The cluster is down"),
    MasterDownError("Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
    TryAgainError("Multiple keys request during rehashing of slot"),
    MovedError("3999 127.0.0.1:6381"),
    AskError("3999 127.0.0.1:6381"),
    NoScriptError("No matching script."),
    SlotNotCoveredError("Command # 1 (GET x) requires a slot that is not covered"),
    RedisClusterException("Redis Cluster cannot be connected. Please provide at least one"),
    RedisClusterException("All slots are not covered after query all startup_nodes."),
]
NOT_RECOVERABLE = [
    redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
    redis.ResponseError("ERR Error running script: attempt to compare nil with number"),
    ClusterCrossSlotError("Keys in request don't hash to the same slot"),
    CrossSlotTransactionError("Cannot watch or send commands on different slots"),
    RedisClusterException("EVALSHA - all keys must map to the same key slot"),
    RedisClusterException("ERROR: Calling pipelined function time is blocked"),
]


@pytest.mark.parametrize("error", RECOVERABLE, ids=repr)
def test_a_service_briefly_away_is_recoverable(error: Exception) -> None:
    with (
        pytest.raises(RecoverableError, match="cannot commit offsets") as caught,
        translated("commit offsets"),
    ):
        raise error

    assert caught.value.__cause__ is error


@pytest.mark.parametrize("error", NOT_RECOVERABLE, ids=repr)
def test_a_mistake_or_a_refusal_is_an_offset_store_error(error: Exception) -> None:
    with pytest.raises(OffsetStoreError) as caught, translated("commit offsets"):
        raise error

    assert not isinstance(caught.value, RecoverableError)
    assert caught.value.__cause__ is error
