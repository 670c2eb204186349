"""End to end: Redis loses a pipeline's offsets (restarted without persistence, a failover to a
lagging replica, a flushed database) while the workers are down; started again with the start
policy ``latest``, the pipeline resumes from Kafka's copy of its offsets: every record after the
last commit is delivered, none skipped, and the restore is logged."""

from __future__ import annotations

import pytest
import redis
from kafka import KafkaAdminClient

from tests.integration.e2e.conftest import ClusterFactory
from tests.integration.e2e.harness import produce, wait_for
from tests.integration.e2e.test_delivery import pipeline, seen, stored, uids, values, wait_delivered
from tests.integration.test_kafka_copy import group_offsets

pytestmark = pytest.mark.slow


def forget(client: redis.Redis, prefix: str, topic: str) -> int:
    """Delete every key of the pipeline's (cluster, group, topic): offsets, generations, the
    ledger, leases, the record of Kafka's copy. The stages' counts stay."""
    keys = list(client.scan_iter(match=f"{prefix}:*{{test/workers/{topic}}}*", count=1000))
    return int(client.delete(*keys)) if keys else 0


def test_a_pipeline_whose_redis_lost_its_offsets_resumes_from_kafkas_copy(
    celery_cluster: ClusterFactory,
    new_topic,
    kafka_bootstrap: str,
    redis_client: redis.Redis,
    key_prefix: str,
    admin: KafkaAdminClient,
) -> None:
    # Arrange: a pipeline that starts at the log end has delivered a first lot, and Kafka's
    # copy of its offsets caught up; then its workers stop and Redis loses everything of it.
    topic = new_topic(3)
    config = pipeline(topic, start="latest", kafka_commit_seconds=1)
    cluster = celery_cluster({"events": config})
    cluster.worker("w1", concurrency=2)
    cluster.beat()
    wait_for(lambda: len(stored(redis_client, key_prefix, topic)) == 3, 60, "starts", cluster)
    first = uids(300)
    wait_delivered(cluster, redis_client, key_prefix, topic, first,
                   produce(kafka_bootstrap, topic, values(first), partitions=3))  # fmt: skip
    committed = stored(redis_client, key_prefix, topic)
    wait_for(lambda: group_offsets(admin, "workers", topic) == committed, 60, "the copy", cluster)
    cluster.stop()
    assert forget(redis_client, key_prefix, topic) > 0
    assert stored(redis_client, key_prefix, topic) == {}

    # Act: records arrive while Redis knows nothing; the workers start again
    second = uids(300)
    last = produce(kafka_bootstrap, topic, values(second), partitions=3)
    worker = cluster.worker("w2", concurrency=2)
    cluster.beat()
    wait_delivered(cluster, redis_client, key_prefix, topic, first + second, last)

    # Assert: none skipped ('latest' alone would have skipped all of the second lot), none
    # delivered twice (Kafka's copy had caught up), and the restore was logged.
    counts = seen(redis_client, key_prefix)
    assert set(counts) == set(first + second)
    assert [uid for uid, n in counts.items() if n != 1] == []
    restored = [line for line in worker.log().splitlines() if "restored from Kafka" in line]
    assert len(restored) == 1
    assert "WARNING" in restored[0] and "pipeline events" in restored[0]
    assert "partitions 0, 1, 2 of" in restored[0]
    assert ", ".join(f"{p}: {o}" for p, o in sorted(committed.items())) in restored[0]
