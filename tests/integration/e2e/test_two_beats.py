"""End to end: two ``celery beat`` processes on the same schedule double the pulls, and the
alarm results stay exactly those of the reference model, as with one beat: a pull that
overlaps another finds the partition leased and reads nothing."""

from __future__ import annotations

import random
import re
import time
import uuid
from typing import Any

import pytest
import redis
from kafka import KafkaProducer

from tests.alarm_model import AlertModel
from tests.integration.conftest import TopicFactory
from tests.integration.e2e.conftest import ClusterFactory
from tests.integration.e2e.harness import wait_for
from tests.integration.e2e.test_alarms import read_changes
from tests.integration.e2e.test_delivery import pipeline, stored
from workers.alarms.events import parse_event
from workers.alarms.state import AlertStore, json_bytes

pytestmark = pytest.mark.slow

N = 360
HOSTS = 6  # one fingerprint per host
TASKS = ["workers.alarms.parse", "workers.alarms.build", "workers.alarms.publish"]
# Outcomes of an event applied for the first time (replays of a re-sent batch come on top).
FIRST_OUTCOMES = ("opened", "updated", "recovered", "closed", "stale", "ignored")

SENT_PULL = re.compile(r"Sending due task workers\.pull:")
RAN_PULL = re.compile(r"Task workers\.pull\[[0-9a-f-]+\] received")
PULLED = re.compile(r"Task workers\.pull\[.*succeeded.*'records': (\d+),")
NO_PARTITIONS = re.compile(r"Task workers\.pull\[.*succeeded.*'stopped_by': 'no_partitions'")


def alarm_events(now_s: int, rng: random.Random) -> list[dict[str, Any]]:
    """Event values: times mostly rising with some late ones (stale), a few events sent twice
    (duplicates), every status."""
    events: list[dict[str, Any]] = []
    while len(events) < N:
        if events and rng.random() < 0.08:
            events.append(rng.choice(events))
            continue
        host = rng.randrange(HOSTS)
        roll = rng.random()
        status = "RECOVERED" if roll < 0.25 else "CLOSED" if roll < 0.32 else "ABNORMAL"
        events.append({
            "event_id": uuid.uuid4().hex,
            "alert_name": "disk full",
            "time": now_s - 3000 + 5 * len(events) - rng.choice([0, 0, 0, 40, 300]),
            "severity": rng.randint(1, 3),
            "status": status,
            "dimensions": {"host": f"db-{host}", "service": "shop"},
            "target": "db",
        })  # fmt: skip
    return events


def produce_events(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> list[int]:
    """Send the events to partition 0 in order; returns their offsets."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    try:
        futures = [producer.send(topic, json_bytes(v), partition=0) for v in events]
        producer.flush(timeout=60)
        return [f.get(timeout=60).offset for f in futures]
    finally:
        producer.close(timeout=10)


def count(pattern: re.Pattern[str], log: str) -> int:
    return sum(1 for line in log.splitlines() if pattern.search(line))


def records_pulled(log: str) -> int:
    """The records all pulls in ``log`` read, from their summaries."""
    return sum(int(m.group(1)) for m in map(PULLED.search, log.splitlines()) if m)


def test_two_beats_double_the_pulls_and_change_no_alarm_result(
    celery_cluster: ClusterFactory,
    new_topic: TopicFactory,
    kafka_bootstrap: str,
    redis_client: redis.Redis,
    key_prefix: str,
) -> None:
    # Arrange: one partition, which one pull at a time can lease (a second one finds it taken),
    # and one batch in flight at a time: the events are applied in Kafka order, as the model's.
    topic = new_topic(1)
    new_topic(1, name=f"{topic}.dlq")
    output = new_topic(2, name=f"{topic}-alerts")
    now_s = int(time.time())
    events = alarm_events(now_s, random.Random(20261219))
    offsets = produce_events(kafka_bootstrap, topic, events)
    model = AlertModel()
    outcomes: dict[str, int] = {}
    changes: dict[str, tuple[str, str, int]] = {}  # change id → (change, fingerprint, version)
    for value, offset in zip(events, offsets, strict=True):
        event = parse_event(value, now_s * 1000 + 60_000, 300_000)
        event["record_id"] = f"test/{topic}/0/{offset}"
        outcome, change, alert = model.apply_change(event)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if change and alert is not None:
            changes[f"{alert['id']}:{alert['version']}"] = (
                change, event["fingerprint"], alert["version"]
            )  # fmt: skip
    config = pipeline(topic, tasks=TASKS, batch_size=25, max_in_flight=1, interval=0.3)
    cluster = celery_cluster(
        {"alarms": config},
        WORKERS_ALARM_OUTPUT_TOPIC=output,
        WORKERS_ALARM_QUIET_SECONDS="2592000",  # no alert goes quiet during the test
    )
    store = AlertStore(redis_client, key_prefix, 86_400)

    # Act: one worker with a pool of two processes, two beats with their own schedule files.
    worker = cluster.worker("w1", concurrency=2)
    beats = [cluster.beat("beat-a"), cluster.beat("beat-b")]
    end = {0: max(offsets) + 1}
    wait_for(lambda: stored(redis_client, key_prefix, topic) == end, 60, "pulled", cluster)
    applied = len(events) - outcomes.get("duplicate", 0)
    wait_for(
        lambda: sum(store.stats().get(o, 0) for o in FIRST_OUTCOMES) == applied
        and store.stats().get("published", 0) == len(changes),
        60, "every event applied and every change published", cluster,
    )  # fmt: skip
    # A pull that overlaps another finds the partition leased and reads nothing: the leases,
    # not luck, keep the doubled pulls from reading a record twice.
    wait_for(
        lambda: count(NO_PARTITIONS, worker.log()) >= 3, 30, "pulls that found no partition",
        cluster,
    )  # fmt: skip
    log = worker.log()
    sent = [count(SENT_PULL, beat.log()) for beat in beats]  # read after: never fewer than sent
    ran, no_ops, pulled = count(RAN_PULL, log), count(NO_PARTITIONS, log), records_pulled(log)
    print(f"pulls sent by the beats {sent}, run {ran}, {no_ops} found no partition")
    time.sleep(1)  # a change published twice would arrive now

    # Assert: exactly the model's alerts and changes, each change published once.
    expected = model.states()
    actual = {fp: store.get(fp) for fp in expected}
    fields = ("id", "status", "count", "severity", "first_time", "last_time", "last_change",
              "version")  # fmt: skip
    assert {fp: {f: a[f] for f in fields} for fp, a in actual.items() if a} == {
        fp: {f: s[f] for f in fields} for fp, s in expected.items()
    }
    stats = store.stats()
    assert {o: stats.get(o, 0) for o in FIRST_OUTCOMES} == {
        o: outcomes.get(o, 0) for o in FIRST_OUTCOMES
    }
    published = read_changes(kafka_bootstrap, output)
    assert len({c["change_id"] for c in published}) == len(published)  # no duplicate
    assert {
        c["change_id"]: (c["change"], c["alert"]["fingerprint"], c["alert"]["version"])
        for c in published
    } == changes  # none missing, none extra
    assert len(changes) >= 20 and {"opened", "recovered", "closed", "stale"} <= set(outcomes)
    # Both beats scheduled pulls, and the worker ran pulls of both: more than either one sent.
    assert min(sent) >= 3, sent
    assert ran > max(sent), (ran, sent)
    assert pulled == len(events)  # all the pulls together read each record once
