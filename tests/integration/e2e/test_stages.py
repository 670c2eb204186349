"""End to end, the stage contract on real workers: a stage's bug or crash costs only the
records that cause it, and a batch whose message vanished is handed off again."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import redis
from kafka import KafkaProducer

from tests.integration.e2e.conftest import EVERY_VARIANT, ClusterFactory
from tests.integration.e2e.harness import wait_for
from tests.integration.e2e.test_bad_records import read_all
from tests.integration.e2e.test_delivery import handed_off, pipeline, seen, stored
from workers.state.keys import Space
from workers.state.ledger_redis import RedisLedger

pytestmark = [pytest.mark.slow, EVERY_VARIANT]


def produce_values(bootstrap: str, topic: str, values: list[dict[str, Any]]) -> dict[int, int]:
    """One record per value, round-robin over 2 partitions; the last offset per partition."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    last: dict[int, int] = {}
    try:
        for i, value in enumerate(values):
            meta = producer.send(topic, json.dumps(value).encode(), partition=i % 2).get(30)
            last[meta.partition] = meta.offset
    finally:
        producer.close()
    return last


def letters_by_uid(bootstrap: str, topic: str, expected: int) -> dict[str, dict[str, str]]:
    found = {}
    for letter in read_all(bootstrap, f"{topic}.dlq", 1, expected):
        headers = {k: v.decode() for k, v in letter.headers}
        found[json.loads(letter.value)["uid"]] = headers
    return found


def test_a_stage_that_fails_on_some_records_dead_letters_only_those(
    celery_cluster: ClusterFactory, new_topic, kafka_bootstrap: str, redis_client, key_prefix
) -> None:
    topic = new_topic(2)
    new_topic(1, name=f"{topic}.dlq")
    values = [{"uid": uuid.uuid4().hex, "fail": i in (7, 33, 34)} for i in range(60)]
    last = produce_values(kafka_bootstrap, topic, values)
    config = pipeline(topic, tasks=["e2e.fragile", "e2e.record"], batch_size=20)
    cluster = celery_cluster({"events": config})

    cluster.worker("w1")
    cluster.beat()
    wait_for(
        lambda: stored(redis_client, key_prefix, topic) == {p: o + 1 for p, o in last.items()},
        120, "offsets past the last record", cluster,
    )  # fmt: skip

    bad = {v["uid"] for v in values if v["fail"]}
    counts = seen(redis_client, key_prefix)
    assert set(counts) == {v["uid"] for v in values} - bad  # every good neighbour went on
    assert set(counts.values()) == {1}
    letters = letters_by_uid(kafka_bootstrap, topic, len(bad))
    assert set(letters) == bad
    for uid, headers in letters.items():
        assert headers["workers.stage"] == "e2e.fragile"
        assert headers["workers.reason"] == (
            f"stage e2e.fragile failed: ValueError: cannot handle {uid}"
        )
        assert headers["workers.topic"] == topic


def test_a_record_that_kills_its_worker_is_isolated_and_its_neighbours_go_on(
    celery_cluster: ClusterFactory, new_topic, kafka_bootstrap: str, redis_client, key_prefix
) -> None:
    topic = new_topic(2)
    new_topic(1, name=f"{topic}.dlq")
    values = [{"uid": uuid.uuid4().hex, "kill": i == 13} for i in range(40)]
    last = produce_values(kafka_bootstrap, topic, values)
    config = pipeline(
        topic, tasks=["e2e.killer", "e2e.record"], batch_size=20, max_attempts=2,
        redrive_seconds=4.0,
    )  # fmt: skip
    cluster = celery_cluster({"events": config})

    worker = cluster.worker("w1")
    cluster.beat()
    wait_for(
        lambda: stored(redis_client, key_prefix, topic) == {p: o + 1 for p, o in last.items()},
        240, "offsets past the last record", cluster,
    )  # fmt: skip

    [killer] = [v["uid"] for v in values if v["kill"]]
    counts = seen(redis_client, key_prefix)
    assert set(counts) == {v["uid"] for v in values} - {killer}
    letters = letters_by_uid(kafka_bootstrap, topic, 1)
    assert list(letters) == [killer]
    assert letters[killer]["workers.reason"].startswith("stage crashed: batch ")
    assert worker.running  # pool processes died; the worker did not
    assert "started 3 times without finishing" in worker.log()


def test_a_batch_whose_message_vanished_is_handed_off_again(
    celery_cluster: ClusterFactory, new_topic, kafka_bootstrap: str, redis_client, key_prefix
) -> None:
    topic = new_topic(2)
    values = [{"uid": uuid.uuid4().hex} for _ in range(30)]
    last = produce_values(kafka_bootstrap, topic, values)
    stages = f"stages-{uuid.uuid4().hex[:8]}"  # the chains' queue, apart from the pulls'
    cluster = celery_cluster({"events": pipeline(topic, redrive_seconds=5.0, queue=stages)})
    broker = redis.Redis.from_url(cluster.env["E2E_BROKER_URL"])
    space = Space(key_prefix, "test", "workers", topic)
    ledger = RedisLedger(redis_client)

    cluster.beat()
    puller = cluster.worker("puller")  # runs the pulls; nobody consumes the stages' queue yet
    # A batch is recorded in the ledger before its message is queued: wait for both.
    wait_for(
        lambda: sum(len(b.in_flight) for b in ledger.snapshot(space, [0, 1]).partitions.values())
        >= 2 and broker.llen(stages) >= 1,
        60, "batches in flight and queued", cluster,
    )  # fmt: skip
    waiting = broker.llen(stages)
    lost = broker.delete(stages)  # as when a worker dies between taking and recording
    cluster.worker("w1", queues=stages)
    wait_for(
        lambda: stored(redis_client, key_prefix, topic) == {p: o + 1 for p, o in last.items()},
        90, "offsets past the last record", cluster,
    )  # fmt: skip

    assert (lost, waiting >= 1) == (1, True)
    counts = seen(redis_client, key_prefix)
    assert set(counts) == {v["uid"] for v in values} and set(counts.values()) == {1}
    assert set(handed_off(redis_client, key_prefix).values()) == {1}  # the lost ones once
    assert "handed off again" in puller.log()
