"""End to end: a real worker's log never shows a configured secret, whoever logs it."""

from __future__ import annotations

import json

import pytest
from kafka import KafkaProducer

from tests.integration.e2e.conftest import ClusterFactory
from tests.integration.e2e.harness import wait_for
from tests.integration.e2e.test_bad_records import read_all
from tests.integration.e2e.test_delivery import pipeline, stored

pytestmark = pytest.mark.slow

SECRET = "Hunter2-Sasl-Pa55"


def test_secrets_logged_or_raised_by_a_stage_are_masked_in_the_worker_log(
    celery_cluster: ClusterFactory, new_topic, kafka_bootstrap: str, redis_client, key_prefix
) -> None:
    topic = new_topic(1)
    new_topic(1, name=f"{topic}.dlq")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    last = 0
    for value in ({"n": 1}, {"n": 2, "fail": True}):
        last = producer.send(topic, json.dumps(value).encode()).get(30).offset
    producer.close()
    config = pipeline(topic, tasks=["e2e.leaky", "e2e.record"])
    cluster = celery_cluster({"events": config}, E2E_SECRET=SECRET)

    worker = cluster.worker("w1", concurrency=1)
    cluster.beat()
    wait_for(
        lambda: stored(redis_client, key_prefix, topic) == {0: last + 1},
        90, "offsets at the end", cluster,
    )  # fmt: skip

    log = worker.log()
    assert "authenticating with ***" in log  # the line is there, the secret is not
    assert "authentication with *** failed" in log
    assert SECRET not in log
    [letter] = read_all(kafka_bootstrap, f"{topic}.dlq", 1, 1)
    reason = dict(letter.headers)["workers.reason"].decode()
    assert reason == "stage e2e.leaky failed: ValueError: authentication with *** failed"
