"""A partition paused with fetched records buffered and then resumed returns records again:
kafka-python 3.0 never does without ``workers.kafka.resume_fix`` and does with it. (If
kafka-python fixes it, the first case fails and says the fix can go.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from workers.connections import Connections
from workers.kafka import resume_fix

PER_PARTITION = 1000


@pytest.fixture
def fix_removed() -> Iterator[None]:
    was = resume_fix.installed()
    resume_fix.uninstall()
    yield
    if was:
        resume_fix.install()


def _fill(bootstrap: str, topic: str) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(2 * PER_PARTITION):
        producer.send(topic, b"x" * 100, partition=i % 2)
    producer.flush(30)
    producer.close()


def _pause_then_resume(bootstrap: str, topic: str) -> tuple[int, int]:
    """Read a little, pause partition 0 (seeking it back to its position, as the pull does),
    read on, resume it; how many records of partition 0 were read before and after."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, 0)
    got = {0: 0, 1: 0}

    def poll(times: int) -> None:
        for _ in range(times):
            for tp, records in consumer.poll(timeout_ms=200, max_records=50).items():
                got[tp.partition] += len(records)

    try:
        poll(3)
        before = got[0]
        assert 0 < before < PER_PARTITION  # records of partition 0 are buffered
        consumer.seek(tps[0], consumer.position(tps[0]))
        consumer.pause(tps[0])
        poll(10)
        consumer.resume(tps[0])
        poll(40)
        return before, got[0]
    finally:
        consumer.close()


def test_without_the_fix_a_resumed_partition_returns_nothing(
    fix_removed: None, kafka_bootstrap: str, new_topic
) -> None:
    topic = new_topic(2)
    _fill(kafka_bootstrap, topic)

    before, after = _pause_then_resume(kafka_bootstrap, topic)

    assert after == before, "kafka-python fixed it: workers.kafka.resume_fix can go"


def test_with_the_fix_a_resumed_partition_is_read_to_its_end(
    kafka_bootstrap: str, new_topic
) -> None:
    topic = new_topic(2)
    _fill(kafka_bootstrap, topic)
    resume_fix.install()

    _, after = _pause_then_resume(kafka_bootstrap, topic)

    assert after == PER_PARTITION


def test_the_connection_cache_installs_it_with_its_first_consumer(
    fix_removed: None, kafka_bootstrap: str, redis_url: str
) -> None:
    from tests.integration.cli_support import base_conf
    from workers.config import load_settings

    settings = load_settings(base_conf(kafka_bootstrap, redis_url, "fix"), environ={})
    connections = Connections(settings)
    try:
        assert not resume_fix.installed()
        connections.consumer("test")
        assert resume_fix.installed()
    finally:
        connections.close()
