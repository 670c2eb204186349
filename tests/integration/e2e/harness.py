"""The environment of the end-to-end tests' Celery processes (``workers.testing.cluster``),
record producers, and waiting with the processes' logs at hand."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from workers.testing import wait_until
from workers.testing.cluster import Cluster

ROOT = Path(__file__).resolve().parents[3]
__all__ = ["Cluster", "make_env", "produce", "wait_for"]


def make_env(
    *, kafka: str, redis_url: str, prefix: str, pipelines: dict[str, Any], **extra: str
) -> tuple[dict[str, str], str]:
    queue = f"e2e-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(ROOT),
        WORKERS_CELERY_CONFIG="tests.integration.e2e.celeryconfig_e2e",
        E2E_BROKER_URL=redis_url.rsplit("/", 1)[0] + "/1",
        E2E_QUEUE=queue,
        E2E_KAFKA=kafka,
        E2E_REDIS_URL=redis_url,
        E2E_PREFIX=prefix,
        E2E_PIPELINES=json.dumps(pipelines),
    )
    env.update(extra)  # may replace any of the above (the broker, for one)
    return env, queue


def produce(bootstrap: str, topic: str, values: Iterable[bytes], partitions: int) -> dict[int, int]:
    """Send values round-robin over ``partitions``; returns the last offset per partition."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    try:
        futures = [
            producer.send(topic, value=value, partition=i % partitions)
            for i, value in enumerate(values)
        ]
        producer.flush(timeout=60)
        last: dict[int, int] = {}
        for future in futures:
            meta = future.get(timeout=60)
            last[meta.partition] = max(last.get(meta.partition, -1), meta.offset)
        return last
    finally:
        producer.close(timeout=10)


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, cluster: Cluster | None = None
) -> None:
    """``wait_until`` with the cluster's processes checked between tries and their logs in the
    failure."""
    wait_until(
        condition, timeout, what,
        check=None if cluster is None else cluster.check,
        explain=None if cluster is None else cluster.logs_text,
        interval=0.1,
    )  # fmt: skip
