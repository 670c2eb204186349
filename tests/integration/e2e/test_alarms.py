"""End to end: 10,000 random alarm events through parse → a user stage → build → publish on a
real worker give exactly the alerts a simple in-memory model computes, on the Redis broker and
on RabbitMQ."""

from __future__ import annotations

import json
import random
import time
import uuid
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.alarm_model import AlertModel
from tests.integration.e2e.conftest import EVERY_EXECUTION_AND_RABBITMQ, ClusterFactory
from tests.integration.e2e.harness import wait_for
from tests.integration.e2e.test_delivery import pipeline, stored
from workers.alarms.events import InvalidEvent, parse_event
from workers.alarms.state import AlertStore

pytestmark = [pytest.mark.slow, EVERY_EXECUTION_AND_RABBITMQ]

N = 10_000


def random_events(now_s: int, rng: random.Random) -> list[Any]:
    """Event values (mostly dicts; a few invalid) in a random order with duplicates."""
    names = ["cpu high", "disk full", "http 5xx", "latency p99"]
    hosts = [f"web-{i}" for i in range(10)]
    values: list[Any] = []
    while len(values) < N:
        roll = rng.random()
        if roll < 0.005:
            values.append({"event_id": "x", "alert_name": "bad", "time": now_s, "severity": 9})
            continue
        if roll < 0.10 and values:  # the same event sent again
            values.append(rng.choice(values))
            continue
        status = "RECOVERED" if roll < 0.25 else "CLOSED" if roll < 0.28 else "ABNORMAL"
        values.append({
            "event_id": uuid.uuid4().hex,
            "alert_name": rng.choice(names),
            "time": now_s - rng.randint(60, 3600),
            "severity": rng.randint(1, 3),
            "status": status,
            "dimensions": {"host": rng.choice(hosts), "service": "shop"},
            "target": "maintenance" if roll > 0.98 else "web",
        })  # fmt: skip
    return values


def read_changes(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=3000)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        return [json.loads(record.value) for record in consumer]
    finally:
        consumer.close()


def test_random_events_build_exactly_the_alerts_of_the_reference_model(
    celery_cluster: ClusterFactory, new_topic, kafka_bootstrap: str, redis_client, key_prefix
) -> None:
    rng = random.Random(20261124)
    topic = new_topic(1)  # one partition and one worker process: Kafka order is apply order
    new_topic(1, name=f"{topic}.dlq")
    output = new_topic(3, name=f"{topic}-alerts")
    now_s = int(time.time())
    values = random_events(now_s, rng)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    offsets = [producer.send(topic, json.dumps(v).encode()) for v in values]
    producer.flush()
    last = offsets[-1].get(30).offset
    producer.close()
    model = AlertModel()
    expected_invalid = expected_dropped = 0
    for offset, value in enumerate(values):
        try:
            event = parse_event(value, now_s * 1000 + 60_000, 300_000)
        except InvalidEvent:
            expected_invalid += 1
            continue
        if event["target"] == "maintenance":
            expected_dropped += 1
            continue
        event["record_id"] = f"test/{topic}/0/{offset}"
        model.apply(event)
    tasks = ["workers.alarms.parse", "e2e.maintenance", "workers.alarms.build",
             "workers.alarms.publish"]  # fmt: skip
    cluster = celery_cluster(
        {"alarms": pipeline(topic, tasks=tasks, batch_size=200)},
        WORKERS_ALARM_OUTPUT_TOPIC=output,
        WORKERS_ALARM_QUIET_SECONDS="2592000",
    )
    store = AlertStore(redis_client, key_prefix, 86_400)

    cluster.worker("w1", concurrency=1)
    cluster.beat()
    wait_for(
        lambda: stored(redis_client, key_prefix, topic) == {0: last + 1}, 120, "pulled", cluster
    )
    built = N - expected_invalid - expected_dropped
    outcomes = ("opened", "updated", "recovered", "closed", "stale", "ignored", "duplicate",
                "replayed")  # fmt: skip
    wait_for(
        lambda: sum(store.stats().get(o, 0) for o in outcomes) == built
        and store.stats().get("published", 0)
        == sum(store.stats().get(o, 0) for o in outcomes[:4]),
        180, "every event applied and every change published", cluster,
    )  # fmt: skip

    expected = model.states()
    actual = {fp: store.get(fp) for fp in expected}
    fields = ("id", "status", "count", "severity", "first_time", "last_time", "last_change")
    assert {fp: {f: a[f] for f in fields} for fp, a in actual.items() if a} == {
        fp: {f: s[f] for f in fields} for fp, s in expected.items()
    }
    stats = store.stats()
    assert stats["invalid"] == expected_invalid
    changes = read_changes(kafka_bootstrap, output)
    assert len(changes) == stats["published"]
    assert len({c["change_id"] for c in changes}) == len(changes)  # nothing published twice
    final: dict[str, dict[str, Any]] = {}
    for change in changes:  # per key in order: the last change is the alert's state
        final[change["alert"]["fingerprint"]] = change["alert"]
    assert {fp: a["version"] for fp, a in final.items()} == {
        fp: a["version"] for fp, a in actual.items() if a
    }
    dead = read_changes(kafka_bootstrap, f"{topic}.dlq")
    assert len(dead) == expected_invalid + expected_dropped
