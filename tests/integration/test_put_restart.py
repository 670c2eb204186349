"""``KafkaQueue.put`` across broker restarts: every value written exactly once.

``put`` leaves retries to kafka-python's idempotent producer (a batch retried within the
producer's delivery timeout is written once) instead of re-sending failed records by hand,
which put them into new batches and could write them twice. Here a broker with durable storage
is killed and started again twice while a thread puts values (once at once, once after 8 s
down); then the topic is read back.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from tests.integration.conftest import create_topic
from tests.integration.services import durable_broker
from tests.integration.test_connections import settings_for
from workers.connections import Connections
from workers.kafka.queue import KafkaQueue

VALUES, CHUNK, PARTITIONS = 6_000, 200, 3
# The second time the broker stays down longer than the cluster's ``timeout`` (6 s): a put
# waits for the producer's delivery timeout, not for the queue's request timeout.
DOWN = 8.0


def read_back(bootstrap: str, topic: str, expect: int) -> list[bytes]:
    """Every value of ``topic``: read until ``expect`` arrived and then 3 s more brought none."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    values: list[bytes] = []
    quiet_since, deadline = time.monotonic(), time.monotonic() + 120
    while time.monotonic() < deadline:
        batch = [r.value for rs in consumer.poll(timeout_ms=500).values() for r in rs]
        values.extend(batch)
        if batch:
            quiet_since = time.monotonic()
        elif len(values) >= expect and time.monotonic() - quiet_since > 3:
            break
    consumer.close()
    return values


def test_a_broker_restart_during_puts_writes_every_value_exactly_once(redis_url: str) -> None:
    with durable_broker() as broker:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        topic = f"test-{uuid.uuid4().hex[:12]}"
        create_topic(admin, topic, PARTITIONS)
        admin.close()
        cache = Connections(settings_for(broker.bootstrap, redis_url))
        queue = KafkaQueue(topic, connections=cache, redis_offset=False)
        values = [f"value-{i:05d}".encode() for i in range(VALUES)]
        sent: list[int] = []
        spans: list[tuple[float, float]] = []  # (start, end) of each put
        kills: list[float] = []
        errors: list[BaseException] = []
        chunks = range(0, VALUES, CHUNK)
        # The broker is killed as the puts of these chunks begin: a quarter and 60% of the way.
        kill_at = {
            chunks[len(chunks) // 4]: threading.Event(),
            chunks[len(chunks) * 3 // 5]: threading.Event(),
        }

        def put_all() -> None:
            try:
                for begin in chunks:
                    start = time.monotonic()
                    if begin in kill_at:
                        kill_at[begin].set()
                    sent.append(queue.put(values[begin : begin + CHUNK]))
                    spans.append((start, time.monotonic()))
                    time.sleep(0.02)  # a steady stream, so that restarts land inside puts
            except BaseException as exc:  # noqa: BLE001 - asserted below
                errors.append(exc)

        putter = threading.Thread(target=put_all)
        putter.start()
        for started, down in zip(kill_at.values(), (0.0, DOWN), strict=True):
            assert started.wait(120)
            kills.append(time.monotonic())
            broker.restart(down_seconds=down)
        putter.join(300)

        assert not putter.is_alive()
        assert errors == []
        # Each kill landed inside a put (else this would test nothing).
        assert all(any(a <= kill <= b for a, b in spans) for kill in kills), (kills, spans)
        assert sum(sent) == VALUES
        counts = Counter(read_back(broker.bootstrap, topic, VALUES))
        assert sorted(v for v in values if counts[v] == 0) == []  # none lost
        assert sorted(v for v, n in counts.items() if n > 1) == []  # none twice
        assert len(counts) == VALUES
        queue.close()
        cache.close()
