"""Scenario 4: events produced at a steady rate; the time from each event's produce time to its
alert change on the output topic, in long-lived mode and in Beat mode.

Every event carries its produce time (``time``, epoch ms, set as it is sent). An alert change
carries the time of the event that made it (``last_time``, or ``last_change`` for a status
change), and its record on the output topic carries the time the publish task sent it (the
record's timestamp): the difference is the event's latency. Events of one host share a
partition, so one alert's events are applied in order.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from bench.cluster import Cluster, Progress, wait
from bench.events import Events
from bench.kafka_io import Tracker, delete_topics, partition_of, producer
from bench.services import Services, names, pipeline
from workers.testing import create_topics

PARTITIONS = 6
WORKER_PROCESSES = 3  # long-lived: one consumer slot and two processes for the chain


class SteadyProducer:
    """Sends events at ``rate`` per second from a thread, each stamped with its send time."""

    def __init__(self, svc: Services, topic: str, rate: float) -> None:
        self.producer = producer(svc.kafka)
        self.topic = topic
        self.rate = rate
        self.tracker = Tracker()
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> SteadyProducer:
        self._thread.start()
        return self

    def _run(self) -> None:
        events = Events(seed=11)
        started = time.monotonic()
        while not self._stop.is_set():
            due = int((time.monotonic() - started) * self.rate) - self.sent
            for _ in range(due):
                key, value = events.next(self.sent, int(time.time() * 1000))
                future = self.producer.send(
                    self.topic, value=value, key=key, partition=partition_of(key, PARTITIONS)
                )
                future.add_callback(self.tracker.ok)
                future.add_errback(self.tracker.failed)
                self.sent += 1
            time.sleep(0.005)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(30)
        self.producer.flush(60)
        self.producer.close(10)
        if self.tracker.errors:
            raise RuntimeError(f"{len(self.tracker.errors)} events not sent")
        return self.sent


def changes(svc: Services, topic: str) -> list[tuple[int, dict[str, Any]]]:
    """Every (record timestamp, alert) on the output topic."""
    consumer = KafkaConsumer(bootstrap_servers=svc.kafka, consumer_timeout_ms=2000)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        return [(r.timestamp, json.loads(r.value)["alert"]) for r in consumer]
    finally:
        consumer.close()


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p95 and p99 interpolated between the measured values (never beyond them), and the
    largest value."""
    # Python before 3.13 wants two values at least.
    cuts = (
        statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else values * 99
    )
    return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98], "max": max(values)}


def run(svc: Services, mode: str, rate: float, seconds: float, warmup: float,
        tmp: Path, execution: str = "chain") -> dict[str, Any]:  # fmt: skip
    """Latency percentiles (ms) of the events sent after ``warmup`` for ``seconds``, with the
    stages run as ``execution`` says."""
    prefix, queue = names()
    topic, output = f"{prefix}-events", f"{prefix}-alerts"
    create_topics(svc.kafka, {topic: PARTITIONS, output: PARTITIONS})
    conf = pipeline(topic, start="earliest", execution=execution)
    if mode == "long_lived":
        conf.update(mode="long_lived", concurrency=1)
    env = svc.env(prefix, queue, {"bench": conf}, BENCH_OUTPUT=output)
    cluster = Cluster(env, tmp, queue)
    client = svc.redis()
    progress = Progress(client, prefix)
    try:
        worker = cluster.worker(concurrency=WORKER_PROCESSES, consume=mode == "long_lived")
        cluster.beat()
        wait(lambda: " ready." in worker.output(), 120, "the worker to start", cluster)
        time.sleep(2.0)  # the supervisor has started the consumer; Beat has pulled once
        load = SteadyProducer(svc, topic, rate).start()
        time.sleep(warmup)
        window = (time.time() * 1000, 0.0)
        time.sleep(seconds)
        window = (window[0], time.time() * 1000)
        sent = load.stop()

        def drained() -> bool:
            built, made, published = progress.read()
            return built >= sent and published >= made

        wait(drained, 300, f"{mode}: every event applied and published", cluster)
        found = changes(svc, output)
    finally:
        cluster.stop()
        client.close()
        svc.cleanup(prefix, [queue])
        delete_topics(svc.kafka, [topic, output])
    latencies = [
        float(ts - made)
        for ts, alert in found
        if window[0] <= (made := max(alert["last_time"], alert["last_change"])) <= window[1]
    ]
    if not latencies:
        raise RuntimeError(f"{mode}: no alert change of an event in the measured window")
    return {"rate": rate, "events": sent, "changes": len(latencies), **percentiles(latencies)}
