"""The services a run uses: a local ``redis-server`` and the Tansu broker (as in the tests), or
external ones from ``WORKERS_BENCH_KAFKA=host:port`` / ``WORKERS_BENCH_REDIS=redis://...``.

Also the environment and the in-process Celery app that point the package at them.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from celery import Celery

from bench import celeryconfig
from workers.runtime.setup import setup
from workers.testing import RedisServer, TansuBroker

ROOT = Path(__file__).resolve().parents[1]
KAFKA_VAR = "WORKERS_BENCH_KAFKA"
REDIS_VAR = "WORKERS_BENCH_REDIS"


@dataclass
class Services:
    kafka: str
    redis_url: str
    broker: str  # what the Kafka side is, for the report
    pids: dict[str, int] = field(default_factory=dict)

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def env(
        self, prefix: str, queue: str, pipelines: dict[str, Any], **extra: str
    ) -> dict[str, str]:
        """The environment of a worker or beat of this run (also the in-process app's config)."""
        env = dict(os.environ)
        env.update(
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            WORKERS_CELERY_CONFIG="bench.celeryconfig",
            BENCH_BROKER_URL=self.redis_url,
            BENCH_QUEUE=queue,
            BENCH_KAFKA=self.kafka,
            BENCH_REDIS_URL=self.redis_url,
            BENCH_PREFIX=prefix,
            # A group per run: each run reads its topic afresh under a new key prefix, and a
            # pull would otherwise restore the last run's Kafka copy of the offsets.
            BENCH_PIPELINES=json.dumps({n: {"group": prefix, **p} for n, p in pipelines.items()}),
            **extra,
        )
        return env

    def cleanup(self, prefix: str, queues: list[str]) -> None:
        """Delete a scenario's keys: its prefix and its Celery queues."""
        client = self.redis()
        try:
            keys = list(client.scan_iter(match=f"{prefix}*", count=10_000))
            for i in range(0, len(keys), 5000):
                client.delete(*keys[i : i + 5000])
            for queue in queues:
                client.delete(queue, queue + ".consume")
        finally:
            client.close()


@contextmanager
def services() -> Iterator[Services]:
    """The run's services; local ones are stopped at the end."""
    kafka = os.environ.get(KAFKA_VAR)
    redis_url = os.environ.get(REDIS_VAR)
    started: list[RedisServer | TansuBroker] = []
    try:
        if not redis_url:
            server = RedisServer().start()
            started.append(server)
            redis_url = server.url
        if kafka:
            broker = f"external ({KAFKA_VAR}={kafka})"
        else:
            tansu = TansuBroker().start()
            started.append(tansu)
            kafka, broker = tansu.bootstrap, "Tansu (embedded, memory storage)"
        pids = {type(s).__name__: s.pid for s in started if s.pid is not None}
        yield Services(kafka, redis_url, broker, pids)
    finally:
        for service in reversed(started):
            service.stop()


def names() -> tuple[str, str]:
    """A fresh key prefix and Celery queue name."""
    tag = uuid.uuid4().hex[:8]
    return f"bench-{tag}", f"bench-{tag}"


def app_for(env: dict[str, str]) -> Celery:
    """An in-process Celery app configured and set up like the workers of ``env``."""
    app = Celery("bench", set_as_current=False)
    app.conf.update(celeryconfig.build(env))
    setup(app)  # as workers.app does: the same transport patches as a worker's
    return app


def pipeline(topic: str, **overrides: Any) -> dict[str, Any]:
    """The reference alarm pipeline on ``topic``, read from the start."""
    return {
        "cluster": "bench",
        "topic": topic,
        "tasks": ["workers.alarms.parse", "workers.alarms.build", "workers.alarms.publish"],
        "batch_size": 500,
        "mode": "beat",
        "interval": 1.0,
        "start": "earliest",
        **overrides,
    }
