"""End to end through Redis Sentinel: real workers keep offsets, leases, the ledger and alert
state in the master that three Sentinels name (``redis+sentinel://``, with passwords on the
data nodes and on the Sentinels), and ``SENTINEL FAILOVER`` is forced in the middle of a run of
alarm events. The workers find the new master by themselves; no record is lost (every alert
ends as the reference model says, every change it made is published), and the stored offset
never falls below where it stood before the failover (a replay from there, absorbed by the
stages, is all a failover may cost). The Celery broker is a plain redis-server."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaProducer

from tests.alarm_model import AlertModel
from tests.integration.e2e.conftest import ClusterFactory
from tests.integration.e2e.harness import wait_for
from tests.integration.e2e.test_alarms import random_events, read_changes
from tests.integration.e2e.test_delivery import pipeline, stored
from tests.integration.redis_ha import SENTINEL_PASSWORD, SentinelSet
from workers.alarms.events import InvalidEvent, parse_event
from workers.alarms.state import AlertStore
from workers.connections.redis_clients import redis_client as client_for
from workers.exceptions import WorkersError

pytestmark = pytest.mark.slow

STATE = ("id", "status", "count", "severity", "first_time", "last_time", "last_change", "version")


@pytest.fixture
def redis_client(redis_sentinels: SentinelSet) -> Iterator[Any]:
    """The Sentinels' master (it finds the new one after a failover, as the workers do)."""
    client = client_for(
        redis_sentinels.url, sentinel_password=SENTINEL_PASSWORD, socket_timeout=5,
        socket_connect_timeout=5,
    )  # fmt: skip
    yield client
    client.close()


@pytest.fixture
def celery_cluster(celery_cluster: ClusterFactory, redis_sentinels: SentinelSet) -> ClusterFactory:
    """Workers whose Redis is the Sentinels' master; their broker stays the test's
    (``celery_broker``: the plain redis-server)."""

    def make(pipelines: dict[str, Any], **extra: str) -> Any:
        env = {"E2E_REDIS_URL": redis_sentinels.url,
               "WORKERS_REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD, **extra}  # fmt: skip
        return celery_cluster(pipelines, **env)

    return make


class OffsetWatch:
    """Reads the stored offset of partition 0 every 50 ms in a thread (through the Sentinels,
    across the failover), keeping every value read and when."""

    def __init__(self, client: Any, prefix: str, topic: str) -> None:
        self.seen: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(client, prefix, topic))
        self._thread.start()

    def _run(self, client: Any, prefix: str, topic: str) -> None:
        while not self._stop.wait(0.05):
            try:
                offset = stored(client, prefix, topic).get(0)
            except WorkersError:  # the master is moving: read again in a moment
                continue
            if offset is not None:
                self.seen.append((time.monotonic(), offset))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_a_forced_failover_mid_run_loses_no_record_and_no_alert_change(
    celery_cluster: ClusterFactory,
    redis_sentinels: SentinelSet,
    new_topic,
    kafka_bootstrap: str,
    redis_client: Any,
    key_prefix: str,
) -> None:
    # Arrange: events whose alerts the model computes, in one partition read by one process,
    # one batch in flight at a time (so a batch retried in the failover is not overtaken and
    # Kafka order stays apply order)
    rng = random.Random(20261203)
    topic = new_topic(1)
    new_topic(1, name=f"{topic}.dlq")
    output = new_topic(3, name=f"{topic}-alerts")
    now_s = int(time.time())
    values = random_events(now_s, rng)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    sent = [producer.send(topic, json.dumps(v).encode()) for v in values]
    producer.flush()
    end = sent[-1].get(30).offset + 1
    producer.close()
    model = AlertModel()
    changes: set[str] = set()
    for offset, value in enumerate(values):
        try:
            event = parse_event(value, now_s * 1000 + 60_000, 300_000)
        except InvalidEvent:
            continue
        event["record_id"] = f"test/{topic}/0/{offset}"
        _, change, alert = model.apply_change(event)
        if change and alert is not None and change != "replayed":
            changes.add(f"{alert['id']}:{alert['version']}")
    tasks = ["workers.alarms.parse", "workers.alarms.build", "workers.alarms.publish"]
    config = pipeline(topic, tasks=tasks, batch_size=100, max_in_flight=1)
    cluster = celery_cluster(
        {"alarms": config}, WORKERS_ALARM_OUTPUT_TOPIC=output,
        WORKERS_ALARM_QUIET_SECONDS="2592000",
    )  # fmt: skip
    cluster.worker("w1", concurrency=1)
    cluster.beat()
    watch = OffsetWatch(redis_client, key_prefix, topic)
    try:
        wait_for(lambda: bool(watch.seen) and watch.seen[-1][1] >= end // 5, 120,
                 "a fifth of the records done", cluster)  # fmt: skip

        # Act: fail the master over while records flow
        before = watch.seen[-1][1]
        started = time.monotonic()
        old, new = redis_sentinels.failover()
        assert before < end, "the run ended before the failover: nothing was tested"
        wait_for(lambda: stored(redis_client, key_prefix, topic) == {0: end}, 180,
                 "every record done after the failover", cluster)  # fmt: skip
    finally:
        watch.stop()

    # Assert: the workers' state is on the new master, which the Sentinels name
    assert redis_sentinels.current_master() is new
    assert new.client().info("replication")["role"] == "master"
    assert old.client().info("replication")["role"] == "slave"
    # ... no offset fell below where it stood before the failover ...
    after = [offset for t, offset in watch.seen if t >= started]
    assert after and min(after) >= before
    offsets = [offset for _, offset in watch.seen]
    regressions = [(a, b) for a, b in zip(offsets, offsets[1:], strict=False) if b < a]
    print(f"failover at offset {before} of {end}; offsets that moved back: {regressions}")
    # ... every alert is what the model computed ...
    store = AlertStore(redis_client, key_prefix, 86_400)
    expected = model.states()
    actual = {fp: store.get(fp) for fp in expected}
    assert {fp: {f: a[f] for f in STATE} for fp, a in actual.items() if a} == {
        fp: {f: s[f] for f in STATE} for fp, s in expected.items()
    }
    # ... and every change the model made is on the output topic (a change published again
    # after a replay is the same change: same id, same alert)
    published = read_changes(kafka_bootstrap, output)
    by_id: dict[str, list[dict[str, Any]]] = {}
    for change in published:
        by_id.setdefault(change["change_id"], []).append(change)
    assert set(by_id) == changes
    assert all(all(c == copies[0] for c in copies) for copies in by_id.values())
    print(f"{len(published)} changes published, {len(published) - len(by_id)} of them again")
