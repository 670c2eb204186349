"""Shared by the alarm stage tests: ``Stages`` (a Celery app whose settings point at the test
Redis and Kafka; the ``stages`` and ``make_stages`` fixtures are in
``tests/integration/conftest.py``), messages and events to feed them, and readers of topics."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from celery import Celery
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaTimeoutError
from kafka.future import Future

import workers.alarms.tasks  # noqa: F401 - registers the shared alarm tasks
from workers.alarms.events import parse_event
from workers.alarms.state import AlertStore
from workers.connections import connections_for
from workers.exceptions import RecoverableError
from workers.state.keys import alarm_key


@dataclass(frozen=True, slots=True)
class Stages:
    app: Celery
    topic: str  # the pipeline's input topic (records are handed to parse as messages)
    dead_letters: str
    output: str
    bootstrap: str

    def run(self, name: str, *args: Any) -> Any:
        return self.app.tasks[f"workers.alarms.{name}"].run(*args)

    def store(self) -> AlertStore:
        return workers.alarms.tasks.store_for(self.app)


def message(stages: Stages, offset: int, value: Any, partition: int = 0) -> dict[str, Any]:
    """A message as the pull hands it to the first task."""
    return {
        "id": f"test/{stages.topic}/{partition}/{offset}",
        "topic": stages.topic,
        "partition": partition,
        "offset": offset,
        "timestamp": 1_700_000_000_000 + offset,
        "key": f"k{offset}",
        "headers": [["origin", "test"]],
        "value": value,
    }


def good(
    event_id: str, t: float | str, status: str = "ABNORMAL", host: str = "h1"
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "alert_name": "disk full",
        "severity": 2,
        "status": status,
        "time": t,
        "dimensions": {"host": host},
    }


def fp_of(host: str) -> str:
    """The fingerprint of ``good`` events of ``host`` (their time does not count)."""
    t = 1_700_000_000  # a plausible time: one before 2000 is refused as a clock never set
    return str(parse_event(good("x", t, host=host), t * 1000, 0)["fingerprint"])


def read_all(stages: Stages, topic: str) -> list[ConsumerRecord]:
    """Every record of ``topic`` (the end offsets say how many), by partition and offset."""
    consumer = KafkaConsumer(
        bootstrap_servers=stages.bootstrap, enable_auto_commit=False, group_id=None
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        expected = sum(consumer.end_offsets(tps).values())
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + 15
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


def change_ids(records: list[ConsumerRecord]) -> list[str]:
    return [json.loads(r.value)["change_id"] for r in records]


def alert_hashes(stages: Stages, client: redis.Redis, hosts: list[str]) -> list[Any]:
    """The alerts' Redis hashes as stored (``{}`` for none)."""
    prefix = stages.store().prefix
    return [client.hgetall(alarm_key(prefix, "alert", fp_of(h))) for h in hosts]


def fail_once(monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    """Make ``AlertStore.<method>`` raise RecoverableError on its first call only."""
    real = getattr(AlertStore, method)
    calls = {"n": 0}

    def failing(self: AlertStore, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RecoverableError("redis briefly unavailable")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(AlertStore, method, failing)


def failing_send(
    stages: Stages, monkeypatch: pytest.MonkeyPatch, how: str, failing: int = 2
) -> None:
    """Make the ``failing``-th ``send`` of the shared producer fail: at once (``raise``) or as
    a failed delivery the producer reports later (``future``)."""
    producer = connections_for(stages.app).producer("test")
    real = producer.send
    calls = {"n": 0}

    def send(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] != failing:
            return real(*args, **kwargs)
        if how == "raise":
            raise KafkaTimeoutError("no metadata")
        return Future().failure(KafkaTimeoutError("no ack"))

    monkeypatch.setattr(producer, "send", send)
