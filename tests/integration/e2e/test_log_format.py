"""End to end: a real worker's log lines say which task, pipeline, topic, partition and offsets
they are about, as text (``task_name[task_id]:``) or as one JSON object per line."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from kafka import KafkaProducer

from tests.integration.e2e.conftest import ClusterFactory
from tests.integration.e2e.harness import wait_for
from tests.integration.e2e.test_delivery import pipeline, stored

pytestmark = pytest.mark.slow

SECRET = "Hunter2-Log-Format"


def _json_lines(log: str) -> list[dict[str, Any]]:
    """The log's JSON objects; every line that looks like one must be one."""
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_worker_log_lines_carry_the_task_and_the_records_they_are_about(
    log_format: str, celery_cluster: ClusterFactory, new_topic, kafka_bootstrap: str,
    redis_client, key_prefix,
) -> None:  # fmt: skip
    # Arrange: a good record, then one the leaky stage fails on (dead-lettered by isolation).
    topic = new_topic(1)
    new_topic(1, name=f"{topic}.dlq")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    offsets = [
        producer.send(topic, json.dumps(v).encode()).get(30).offset
        for v in ({"n": 1}, {"n": 2, "fail": True})
    ]
    producer.close()
    config = pipeline(topic, tasks=["e2e.leaky", "e2e.record"])
    cluster = celery_cluster({"events": config}, E2E_SECRET=SECRET, WORKERS_LOG_FORMAT=log_format)

    # Act
    worker = cluster.worker("w1", concurrency=1)
    cluster.beat()
    wait_for(
        lambda: stored(redis_client, key_prefix, topic) == {0: offsets[-1] + 1},
        90, "offsets at the end", cluster,
    )  # fmt: skip
    log = worker.log()

    # Assert
    assert SECRET not in log  # masking applies in both formats
    if log_format == "text":
        assert not _json_lines(log)
        assert re.search(r"e2e\.leaky\[[0-9a-f-]{36}\]: authenticating with \*\*\*", log), log
        return
    lines = _json_lines(log)
    assert any(line["logger"].startswith("celery.") for line in lines)  # Celery's own too
    for line in lines:
        assert {"time", "level", "logger", "process", "message"} <= set(line)
    leaky = [line for line in lines if line["message"] == "authenticating with ***"]
    assert leaky, log
    for line in leaky:
        assert line["task_name"] == "e2e.leaky"
        assert re.fullmatch(r"[0-9a-f-]{36}", line["task_id"])
        assert line["pipeline"] == "events" and line["topic"] == topic
        assert line["partition"] == 0
        first, last = line["offsets"]["0"]
        assert offsets[0] >= first and last <= offsets[-1] and first <= last
    [letter] = [line for line in lines if "is a dead letter" in line["message"]]
    assert letter["task_name"] == "e2e.leaky" and letter["pipeline"] == "events"
    assert letter["partition"] == 0 and letter["offsets"] == {"0": [offsets[1], offsets[1]]}
    assert letter["level"] == "WARNING"
