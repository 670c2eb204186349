"""End to end: a corpus of bad records interleaved with good ones, through a real worker."""

from __future__ import annotations

import json
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.integration.e2e.conftest import EVERY_VARIANT, ClusterFactory
from tests.integration.e2e.harness import wait_for
from tests.integration.e2e.test_delivery import pipeline, seen, stored

pytestmark = [pytest.mark.slow, EVERY_VARIANT]

# (value, the reason the dead letter must carry)
BAD: list[tuple[bytes | None, str]] = [
    (b"{not json", "value is not valid JSON (Expecting property name enclosed in double quotes"),
    (b"\xff\xfe{}", "value is not valid UTF-8 (byte 0)"),
    (b"", "value is empty; expected a JSON object"),
    (json.dumps({"pad": "x" * 900_000}).encode(), "value is 900011 bytes; the limit is 524288"),
    (b"[1, 2, 3]", "value is a JSON array; expected a JSON object"),
    (b'"text"', "value is a JSON string; expected a JSON object"),
    (b"NaN", "value is not valid JSON (NaN is not JSON)"),
    (None, "record has no value (a tombstone)"),
]


def read_all(bootstrap: str, topic: str, partitions: int, expected: int) -> list:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=2000,
        fetch_max_bytes=4 << 20, max_partition_fetch_bytes=4 << 20,
    )  # fmt: skip
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list = []
        for _ in range(20):
            records.extend(consumer)
            if len(records) >= expected:
                break
        return records
    finally:
        consumer.close()


def test_bad_records_go_to_the_dead_letter_topic_and_good_ones_are_delivered(
    celery_cluster: ClusterFactory, new_topic, kafka_bootstrap: str, redis_client, key_prefix
) -> None:
    topic = new_topic(3)
    new_topic(2, name=f"{topic}.dlq")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    good: list[str] = []
    bad_at: dict[tuple[int, int], str] = {}
    last: dict[int, int] = {}
    for round_ in range(3):
        for i, (value, reason) in enumerate(BAD):
            partition = (round_ + i) % 3
            for _ in range(5):  # good records around every bad one
                uid = uuid.uuid4().hex
                good.append(uid)
                meta = producer.send(
                    topic, json.dumps({"uid": uid}).encode(), partition=partition
                ).get(30)
                last[partition] = meta.offset
            key = None if value is None else f"bad-{round_}-{i}".encode()
            meta = producer.send(
                topic, value=value, key=key or b"tomb", partition=partition,
                headers=[("origin", b"corpus")],
            ).get(30)  # fmt: skip
            bad_at[(partition, meta.offset)] = reason
            last[partition] = meta.offset
    producer.close()
    cluster = celery_cluster({"events": pipeline(topic)})

    cluster.worker("w1")
    cluster.beat()
    wait_for(
        lambda: stored(redis_client, key_prefix, topic) == {p: o + 1 for p, o in last.items()},
        120, "offsets past the last record", cluster,
    )  # fmt: skip
    letters = read_all(kafka_bootstrap, f"{topic}.dlq", 2, len(bad_at))

    counts = seen(redis_client, key_prefix)
    assert set(counts) == set(good) and set(counts.values()) == {1}
    found: dict[tuple[int, int], str] = {}
    for letter in letters:
        headers = {k: v.decode() for k, v in letter.headers}
        assert headers["workers.topic"] == topic and headers["workers.cluster"] == "test"
        assert headers["origin"] == "corpus"  # the record's own headers are kept
        found[(int(headers["workers.partition"]), int(headers["workers.offset"]))] = headers[
            "workers.reason"
        ]
    assert sorted(found) == sorted(bad_at)
    for coordinates, reason in bad_at.items():
        assert found[coordinates].startswith(reason), (coordinates, found[coordinates])
    originals = {letter.key: letter.value for letter in letters}
    assert originals[b"bad-0-0"] == b"{not json"
    assert originals[b"bad-1-1"] == b"\xff\xfe{}"
    assert len(originals[b"bad-2-3"]) == 900_011  # the original bytes, not a summary
