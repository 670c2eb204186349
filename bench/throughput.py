"""Scenarios 1 and 2: a plain kafka-python consumer, and the package's pull path, reading the
same records of a filled topic; and both again with librdkafka (confluent-kafka): a plain
confluent-kafka consumer, and the pull with the cluster's ``client_library`` set to
``confluent``. Each returns records per second."""

from __future__ import annotations

import time
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from bench.services import Services, app_for, names, pipeline
from workers.connections import connections_for
from workers.pulling.engine import pulling, run_cycle


def raw(svc: Services, topic: str, ends: dict[int, int]) -> float:
    """Manual assign, seek to the start, poll until every record was returned."""
    consumer = KafkaConsumer(bootstrap_servers=svc.kafka, enable_auto_commit=False, group_id=None)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(ends)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        total, seen = sum(ends.values()), 0
        started = time.perf_counter()
        while seen < total:
            for records in consumer.poll(timeout_ms=500).values():
                seen += len(records)
        return total / (time.perf_counter() - started)
    finally:
        consumer.close()


def raw_confluent(svc: Services, topic: str, ends: dict[int, int]) -> float:
    """A plain confluent-kafka consumer with its defaults: assign at the start, consume until
    every record was returned."""
    import confluent_kafka  # the [confluent] extra

    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": svc.kafka, "group.id": "bench-raw", "enable.auto.commit": False}
    )
    try:
        consumer.assign([confluent_kafka.TopicPartition(topic, p, 0) for p in sorted(ends)])
        total, seen = sum(ends.values()), 0
        started = time.perf_counter()
        while seen < total:
            seen += sum(1 for m in consumer.consume(1000, 0.5) if m.error() is None)
        return total / (time.perf_counter() - started)
    finally:
        consumer.close()


class _Counting:
    """The pull's consumer, counting the records its polls return (to stop at the end)."""

    def __init__(self, consumer: Any) -> None:
        self._consumer = consumer
        self.polled = 0

    def poll(self, *args: Any, **kwargs: Any) -> Any:
        found = self._consumer.poll(*args, **kwargs)
        self.polled += sum(len(records) for records in found.values())
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


def pull(svc: Services, topic: str, ends: dict[int, int], library: str = "kafka-python") -> float:
    """Pull cycles (lease, seek, poll, decode, record in the ledger, hand-off to the Celery
    broker) until every record is handed off; nothing drains the Celery queue, so nothing
    finishes: the read-ahead bound is lifted and no batch comes due. The clock runs from the
    first cycle to the hand-off of the last record. ``library`` is the cluster's
    ``client_library``."""
    prefix, queue = names()
    config = pipeline(topic, max_in_flight=10_000, redrive_seconds=86_400)
    app = app_for(svc.env(prefix, queue, {"bench": config}))
    app.conf.workers_kafka_clusters["bench"]["client_library"] = library
    connections = connections_for(app)
    total = sum(ends.values())
    try:
        connections.consumer("bench").partitions_for_topic(topic)  # connected before the clock
        connections.redis().ping()
        with app.connection_for_write() as conn:
            conn.ensure_connection()
        counting: _Counting | None = None
        with pulling(
            app,
            "bench",
            task="bench-pull",
            stopping=lambda: bool(counting and counting.polled >= total),
        ) as puller:
            counting = _Counting(puller.consumer)
            puller.consumer = counting
            reached: dict[int, int] = {}
            started = time.perf_counter()
            while sum(reached.values()) < total:
                reached.update(run_cycle(app, puller).reached)
            seconds = time.perf_counter() - started
        if reached != ends:
            raise RuntimeError(f"pull reached {reached}, expected {ends}")
        return total / seconds
    finally:
        connections.close()
        svc.cleanup(prefix, [queue])


def pull_confluent(svc: Services, topic: str, ends: dict[int, int]) -> float:
    """``pull`` with the cluster's ``client_library`` set to ``confluent``."""
    return pull(svc, topic, ends, library="confluent")
