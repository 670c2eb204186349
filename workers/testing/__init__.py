"""Helpers for tests, ours and users' (as ``celery.contrib.testing`` is): in-memory twins of the
Redis state, the Kafka log and the producer, held to the real ones by the contract suites, and
local services (``redis-server``, the embedded Kafka-protocol broker, Celery processes).
Production code never imports this package."""

from __future__ import annotations

from workers.demo.services import (
    CeleryCommand,
    RedisServer,
    ServiceUnavailable,
    TansuBroker,
    free_port,
    tansu_binary,
    wait_for_port,
)
from workers.state.local import MemoryLeases, MemoryOffsetStore, MemoryState
from workers.state.local_ledger import MemoryLedger
from workers.testing.memory_log import MemoryConsumer, MemoryLog, MemoryRecord
from workers.testing.memory_producer import MemoryProducer
from workers.testing.topics import create_topics
from workers.testing.waiting import wait_until

__all__ = [
    "CeleryCommand",
    "MemoryConsumer",
    "MemoryLeases",
    "MemoryLedger",
    "MemoryLog",
    "MemoryOffsetStore",
    "MemoryProducer",
    "MemoryRecord",
    "MemoryState",
    "RedisServer",
    "ServiceUnavailable",
    "TansuBroker",
    "create_topics",
    "free_port",
    "tansu_binary",
    "wait_for_port",
    "wait_until",
]
