"""End to end: workers and beat ride through restarts of their Redis broker (kombu 5.7's Redis
transport crashed a worker in about half of them), and no record is lost or stuck."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaProducer

from tests.integration.e2e.conftest import ClusterFactory
from tests.integration.e2e.harness import wait_for
from tests.integration.e2e.test_delivery import pipeline, seen, stored
from tests.integration.services import unavailable
from workers.testing import RedisServer, ServiceUnavailable

pytestmark = pytest.mark.slow


def test_workers_and_beat_survive_broker_restarts_and_lose_nothing(
    celery_cluster: ClusterFactory, new_topic, kafka_bootstrap: str, redis_client, key_prefix,
    tmp_path: Path,
) -> None:  # fmt: skip
    try:
        broker = RedisServer(data_dir=tmp_path / "broker").start()
    except ServiceUnavailable as exc:
        unavailable(str(exc))
    topic = new_topic(3)
    cluster = celery_cluster(
        {"events": pipeline(topic, batch_size=20)},
        E2E_BROKER_URL=broker.url.rsplit("/", 1)[0] + "/1",
        E2E_TASK_DELAY="0.05",  # tasks are running (and unacked) when the broker goes away
    )
    sent: list[str] = []
    last: dict[int, int] = {}
    stop = threading.Event()

    def stream() -> None:
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
        n = 0
        while not stop.is_set():
            uid = uuid.uuid4().hex
            meta = producer.send(topic, f'{{"uid": "{uid}"}}'.encode(), partition=n % 3).get(30)
            sent.append(uid)
            last[meta.partition] = meta.offset
            n += 1
            time.sleep(0.005)
        producer.close()

    try:
        # Gossip and heartbeat on, as in production: their broadcast channels are part of how
        # kombu 5.7's transport crashed a worker on reconnect.
        worker = cluster.worker("w1", concurrency=2, events=True)
        beat = cluster.beat()
        feeder = threading.Thread(target=stream)
        feeder.start()
        for n in range(8):
            enough = 60 * (n + 1)
            wait_for(lambda e=enough: len(seen(redis_client, key_prefix)) > e, 60, "flow",
                     cluster)  # fmt: skip
            broker.kill() if n % 2 else broker.terminate()
            time.sleep(1.0)
            broker.start()
            assert worker.running and beat.running, f"restart {n + 1}\n{cluster.logs_text()}"
        stop.set()
        feeder.join(60)
        wait_for(lambda: set(seen(redis_client, key_prefix)) >= set(sent), 240, "every record",
                 cluster)  # fmt: skip
        wait_for(
            lambda: stored(redis_client, key_prefix, topic) == {p: o + 1 for p, o in last.items()},
            120, "offsets past the last record", cluster,
        )  # fmt: skip
    finally:
        stop.set()
        cluster.stop()
        broker.terminate()

    assert "Unrecoverable error" not in worker.log()
