"""End to end: a bad deploy that dead-letters every record trips the pipeline's dead-letter
brake on a real worker; the pulls stop with nothing dead-lettered or committed past the held
batches, ``workers lag`` and ``offsets show`` say so, one error names it; after the fix,
``workers dlq resume`` lets every record through, none lost."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis
from kafka import KafkaConsumer, TopicPartition

from tests.integration.cli_support import Cli, base_conf
from tests.integration.e2e.conftest import EVERY_EXECUTION, ClusterFactory
from tests.integration.e2e.harness import produce, wait_for
from tests.integration.e2e.test_delivery import pipeline, seen, stored, uids, values, wait_delivered
from workers.state.brake_redis import RedisBrake
from workers.state.keys import Space
from workers.state.stats import read

pytestmark = [pytest.mark.slow, EVERY_EXECUTION]


def letters_in(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tp = TopicPartition(topic, 0)
        return int(consumer.end_offsets([tp])[tp])
    finally:
        consumer.close()


def test_a_bad_deploy_trips_the_brake_and_a_resume_after_the_fix_loses_nothing(
    celery_cluster: ClusterFactory, new_topic: Any, kafka_bootstrap: str,
    redis_client: redis.Redis, redis_url: str, key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    topic = new_topic(2)
    new_topic(1, name=f"{topic}.dlq")
    ids = uids(120)
    last = produce(kafka_bootstrap, topic, values(ids), 2)
    config = pipeline(topic, tasks=["e2e.strict"], batch_size=20,
                      dead_letter_max_consecutive=10, dead_letter_max_ratio=None)  # fmt: skip
    space = Space(key_prefix, "test", "workers", topic)
    cli = Cli(monkeypatch, {**base_conf(kafka_bootstrap, redis_url, key_prefix),
                            "workers_pipelines": {"events": config}})  # fmt: skip
    cluster = celery_cluster({"events": config})
    cluster.worker("w1")
    cluster.beat()

    # Act 1: the bad deploy runs
    wait_for(lambda: RedisBrake(redis_client).state(space) is not None, 60, "a trip", cluster)
    time.sleep(3)  # pulls would go on here without the brake
    cycles = read(redis_client, space)["cycles"]
    time.sleep(3)
    lag = json.loads(cli("lag", "events", "--json").stdout)
    shown = json.loads(cli("offsets", "show", "events", "--json", "--no-ages").stdout)
    text = cli("lag", "events").stdout

    # Assert: stopped, nothing dead-lettered or committed, said once
    assert read(redis_client, space)["cycles"] == cycles
    assert stored(redis_client, key_prefix, topic) == {0: 0, 1: 0}
    assert letters_in(kafka_bootstrap, f"{topic}.dlq") == 0
    assert seen(redis_client, key_prefix) == {}
    [row] = lag["pipelines"]
    assert row["brake"]["reason"] == "consecutive" and row["brake"]["source"] == "e2e.strict"
    assert row["brake"]["consecutive"] > 10 and row["counters"]["brake_trips"] == 1
    assert shown["pipelines"][0]["brake"] == row["brake"]
    assert "STOPPED BY THE DEAD-LETTER BRAKE" in text and "workers dlq resume events" in text
    logs = cluster.logs_text(tail=100_000)
    errors = [line for line in logs.splitlines() if "dead-letter brake tripped" in line]
    assert len(errors) == 1, errors
    assert "ERROR" in errors[0] and "workers dlq resume events" in errors[0]

    # Act 2: the fixed deploy, then the resume
    redis_client.set(f"{key_prefix}:e2e:fixed", 1)
    resumed = cli("dlq", "resume", "events", "--yes", "--json")
    again = cli("dlq", "resume", "events", "--yes", "--json")
    wait_delivered(cluster, redis_client, key_prefix, topic, ids, last, timeout=120)

    # Assert: every record went through, none to the dead-letter topic
    assert resumed.exit_code == 0 and json.loads(resumed.stdout)["resumed"] is True
    assert json.loads(again.stdout)["resumed"] is False
    assert set(seen(redis_client, key_prefix)) == set(ids)
    assert letters_in(kafka_bootstrap, f"{topic}.dlq") == 0
    assert RedisBrake(redis_client).state(space) is None
