"""The in-flight ledger contract on a real redis-server (real time for expiry)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis

from tests.contracts.ledger import LedgerContract, MakeLeases
from workers.state.keys import Space
from workers.state.leases import Owner, RedisLeases
from workers.state.ledger_redis import RedisLedger
from workers.state.offsets import RedisOffsetStore


class TestRedis(LedgerContract):
    @pytest.fixture
    def space(self, key_prefix: str) -> Space:
        return Space(key_prefix, "common", "g1", "topic-a")

    @pytest.fixture
    def ledger(self, redis_client: redis.Redis) -> RedisLedger:
        return RedisLedger(redis_client)

    @pytest.fixture
    def store(self, redis_client: redis.Redis) -> RedisOffsetStore:
        return RedisOffsetStore(redis_client)

    @pytest.fixture
    def make_leases(self, redis_client: redis.Redis) -> MakeLeases:
        def make(name: str, ttl: float = 30.0, task: str = "") -> RedisLeases:
            return RedisLeases(redis_client, Owner(f"host-{name}", 1000, task), ttl)

        return make

    @pytest.fixture
    def expire(self) -> Callable[[float], None]:
        return time.sleep
