"""End to end: records produced to Kafka reach the first alarm task through a real worker, on
the Redis broker and on RabbitMQ."""

from __future__ import annotations

import json
import random
import time
import uuid

import pytest
import redis

from tests.integration.brokers import Broker
from tests.integration.e2e.conftest import EVERY_VARIANT_AND_RABBITMQ, ClusterFactory
from tests.integration.e2e.harness import Cluster, produce, wait_for
from workers.state.keys import Space
from workers.state.offsets import RedisOffsetStore

pytestmark = [pytest.mark.slow, EVERY_VARIANT_AND_RABBITMQ]


def pipeline(topic: str, **overrides: object) -> dict[str, object]:
    return {
        "cluster": "test",
        "topic": topic,
        "tasks": ["e2e.record"],
        "batch_size": 100,
        "mode": "beat",
        "interval": 0.3,
        "start": "earliest",
        "max_seconds": 1.0,
        "lease_ttl_seconds": 3.0,
        "redrive_seconds": 20.0,
        "max_runtime_seconds": 20.0,
        **overrides,
    }


def uids(n: int) -> list[str]:
    return [uuid.uuid4().hex for _ in range(n)]


def values(ids: list[str]) -> list[bytes]:
    return [json.dumps({"uid": uid, "n": i}).encode() for i, uid in enumerate(ids)]


def seen(client: redis.Redis, prefix: str) -> dict[str, int]:
    raw = client.hgetall(f"{prefix}:e2e:seen")
    return {k.decode(): int(v) for k, v in raw.items()}


def handed_off(client: redis.Redis, prefix: str) -> dict[str, int]:
    """How many different task messages brought each uid: hand-offs, not Celery redeliveries."""
    tasks: dict[str, int] = {}
    for field in client.hkeys(f"{prefix}:e2e:seen:by-task"):
        uid = field.decode().split("|", 1)[0]
        tasks[uid] = tasks.get(uid, 0) + 1
    return tasks


def stored(client: redis.Redis, prefix: str, topic: str) -> dict[int, int]:
    space = Space(prefix, "test", "workers", topic)
    return {p: pos.offset for p, pos in RedisOffsetStore(client).stored(space).items()}


def wait_delivered(
    cluster: Cluster,
    client: redis.Redis,
    prefix: str,
    topic: str,
    ids: list[str],
    last: dict[int, int],
    timeout: float = 180,
) -> None:
    """Wait until every id reached the first task and the stored offsets are past the last
    record the producer sent to each partition."""
    wait_for(lambda: len(seen(client, prefix)) >= len(ids), timeout, "all ids", cluster)
    wait_for(
        lambda: stored(client, prefix, topic) == {p: o + 1 for p, o in last.items()},
        60, "offsets committed", cluster,
    )  # fmt: skip


def test_every_record_reaches_the_first_task_exactly_once(
    celery_cluster: ClusterFactory, new_topic, kafka_bootstrap: str, redis_client, key_prefix
) -> None:
    topic = new_topic(3)
    ids = uids(10_000)
    last = produce(kafka_bootstrap, topic, values(ids), partitions=3)
    cluster = celery_cluster({"events": pipeline(topic)})

    cluster.worker("w1", concurrency=2)
    cluster.beat()
    wait_delivered(cluster, redis_client, key_prefix, topic, ids, last)

    counts = seen(redis_client, key_prefix)
    assert set(counts) == set(ids)
    assert [uid for uid, n in counts.items() if n != 1] == []


def test_sigkilled_worker_loses_nothing_and_duplicates_stay_bounded(
    celery_cluster: ClusterFactory, new_topic, kafka_bootstrap: str, redis_client, key_prefix,
    celery_broker: Broker,
) -> None:  # fmt: skip
    topic = new_topic(3)
    ids = uids(10_000)
    last = produce(kafka_bootstrap, topic, values(ids), partitions=3)
    batch, concurrency, prefetch = 50, 2, 1
    config = pipeline(topic, batch_size=batch, max_records=500, max_runtime_seconds=10.0)
    # A slow first task keeps work in flight; a short visibility timeout brings back what a
    # killed worker had reserved within the test's time (Redis; RabbitMQ requeues it as soon as
    # the worker's connection drops).
    cluster = celery_cluster({"events": config}, E2E_TASK_DELAY="0.03", E2E_VISIBILITY="12")
    worker = cluster.worker("w0", concurrency=concurrency)
    cluster.beat()
    thresholds = sorted(random.sample(range(1_000, 8_000), 3))

    for kill, threshold in enumerate(thresholds, start=1):
        wait_for(
            lambda t=threshold: len(seen(redis_client, key_prefix)) >= t, 120,
            f"{threshold} ids before kill {kill}", cluster,
        )  # fmt: skip
        worker.kill()
        last_kill = time.time()
        worker = cluster.worker(f"w{kill}", concurrency=concurrency)
    wait_delivered(cluster, redis_client, key_prefix, topic, ids, last, timeout=240)

    # Let the messages the killed workers had reserved come back and run.
    if celery_broker.kind == "redis":  # after the visibility timeout
        broker = redis.Redis.from_url(cluster.env["E2E_BROKER_URL"])
        wait_for(
            lambda: all(
                t > last_kill for _, t in broker.zrange("unacked_index", 0, -1, withscores=True)
            ),
            60, "messages of the killed workers redelivered", cluster,
        )  # fmt: skip
    else:  # requeued at once: wait until none is left waiting
        wait_for(lambda: celery_broker.depth(cluster.queue) == 0, 60, "queue drained", cluster)
    time.sleep(2)
    counts = seen(redis_client, key_prefix)
    assert set(counts) == set(ids)  # zero lost
    duplicates = sum(n - 1 for n in counts.values())
    handoffs = sum(n - 1 for n in handed_off(redis_client, key_prefix).values())
    print(f"kills at {thresholds}: {duplicates} duplicates, {handoffs} handed off twice")
    # The pulls commit after every batch: at most one batch per pull in flight at each kill.
    assert handoffs <= len(thresholds) * concurrency * batch
    # Per kill: one batch handed off but not committed by the pull, plus the batches the
    # killed worker was running or had reserved (redelivered after the visibility timeout).
    assert duplicates <= len(thresholds) * (1 + concurrency * (1 + prefetch)) * batch


def test_two_workers_never_hand_off_the_same_record(
    celery_cluster: ClusterFactory, new_topic, kafka_bootstrap: str, redis_client, key_prefix
) -> None:
    topic = new_topic(3)
    ids = uids(10_000)
    last = produce(kafka_bootstrap, topic, values(ids), partitions=3)
    cluster = celery_cluster({"events": pipeline(topic, max_records=300, batch_size=50)})
    workers = [cluster.worker("a", concurrency=2), cluster.worker("b", concurrency=2)]
    cluster.beat()

    wait_delivered(cluster, redis_client, key_prefix, topic, ids, last)
    time.sleep(1)  # a duplicate hand-off would arrive now

    counts = seen(redis_client, key_prefix)
    assert set(counts) == set(ids)
    assert [uid for uid, n in counts.items() if n != 1] == []
    for worker in workers:  # both really pulled: the test would prove nothing otherwise
        assert "'delivered': " in worker.log() and "workers.pull" in worker.log()
        assert any(
            "'delivered': " in line and "'delivered': 0," not in line
            for line in worker.log().splitlines()
        ), f"{worker.name} delivered nothing"
