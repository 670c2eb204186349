"""End to end, a pipeline over many topics on real workers: a pattern reads every matching
topic and no other, a topic created later is found within the refresh interval and read from
its first record, and each (topic, partition) keeps its own offset."""

from __future__ import annotations

import uuid

import pytest
import redis
from kafka import KafkaAdminClient

from tests.integration.cli_support import send_each
from tests.integration.conftest import TopicFactory
from tests.integration.e2e.conftest import ClusterFactory
from tests.integration.e2e.harness import produce, wait_for
from tests.integration.e2e.test_delivery import handed_off, pipeline, seen, stored, uids, values
from workers.state.keys import pipeline_key

pytestmark = [pytest.mark.slow]


def many(**overrides: object) -> dict[str, object]:
    config = pipeline("unused", **{"topics_refresh_seconds": 1.0, **overrides})
    del config["topic"]
    return config


def send(bootstrap: str, topic: str, n: int, partitions: int) -> tuple[list[str], dict[int, int]]:
    ids = uids(n)
    return ids, produce(bootstrap, topic, values(ids), partitions)


@pytest.mark.parametrize("mode", ["beat", "long_lived"])
def test_a_pattern_reads_every_matching_topic_and_finds_new_ones_from_their_first_record(
    celery_cluster: ClusterFactory, new_topic: TopicFactory, kafka_bootstrap: str,
    redis_client: redis.Redis, key_prefix: str, mode: str,
) -> None:  # fmt: skip
    # Arrange: two matching topics with records, one that does not match, and the pipeline
    # starting at "latest" for the topics it finds at first (those records are skipped)
    base = f"many-{uuid.uuid4().hex[:8]}"
    first, second = new_topic(2, name=f"{base}-a"), new_topic(1, name=f"{base}-b")
    other = new_topic(1, name=f"other-{base}")
    new_topic(1, name=f"{base}.dlq")
    send_each(kafka_bootstrap, first, {0: 3, 1: 2})  # one batch each: see the notes on Tansu
    cluster = celery_cluster({"many": many(
        topic_pattern=f"{base}-[a-z]", start="latest", mode=mode, dead_letter_topic=f"{base}.dlq"
    )})  # fmt: skip
    cluster.worker("w1", concurrency=2, consume=mode == "long_lived")
    cluster.beat()
    wait_for(lambda: set(stored(redis_client, key_prefix, first)) == {0, 1} and
             set(stored(redis_client, key_prefix, second)) == {0}, 60,
             "positions of the topics found at first", cluster)  # fmt: skip

    # Act: records to every topic, then a topic created after the pipeline started
    ids_a, last_a = send(kafka_bootstrap, first, 40, 2)
    ids_b, last_b = send(kafka_bootstrap, second, 30, 1)
    ids_o, _ = send(kafka_bootstrap, other, 10, 1)
    third = new_topic(2, name=f"{base}-c")
    ids_c, last_c = send(kafka_bootstrap, third, 20, 2)  # before the pipeline sees the topic
    wanted = ids_a + ids_b + ids_c
    wait_for(lambda: set(wanted) <= set(seen(redis_client, key_prefix)), 120,
             "every record of the matching topics", cluster)  # fmt: skip

    # Assert
    for topic, last in ((first, last_a), (second, last_b), (third, last_c)):
        wait_for(lambda t=topic, x=last: stored(redis_client, key_prefix, t) ==
                 {p: o + 1 for p, o in x.items()}, 60, f"offsets of {topic}", cluster)  # fmt: skip
    got = seen(redis_client, key_prefix)
    assert set(got) == set(wanted)  # nothing of the other topic, nothing skipped at first
    assert not set(ids_o) & set(got)
    assert all(n == 1 for n in handed_off(redis_client, key_prefix).values())
    assert stored(redis_client, key_prefix, other) == {}
    registry = redis_client.hgetall(pipeline_key(key_prefix, "test", "workers", "many"))
    marks = {k.decode(): v.decode() for k, v in registry.items()}
    assert marks[first] == marks[second] == "initial" and marks[third].isdigit()
    assert other not in marks and f"{base}.dlq" not in marks
    assert f"found topic {third}" in cluster.logs_text()


def test_a_deleted_topic_is_dropped_and_the_others_are_read_on(
    celery_cluster: ClusterFactory, new_topic: TopicFactory, kafka_bootstrap: str,
    redis_client: redis.Redis, key_prefix: str, admin: KafkaAdminClient,
) -> None:  # fmt: skip
    base = f"many-{uuid.uuid4().hex[:8]}"
    kept, doomed = new_topic(1, name=f"{base}-a"), new_topic(1, name=f"{base}-b")
    cluster = celery_cluster({"many": many(topics=[kept, doomed], topics_refresh_seconds=2.0)})
    worker, beat = cluster.worker("w1"), cluster.beat()
    ids, _ = send(kafka_bootstrap, doomed, 10, 1)
    wait_for(lambda: set(ids) <= set(seen(redis_client, key_prefix)), 60, "the first records",
             cluster)  # fmt: skip

    # The embedded broker creates a deleted topic again when a consumer asks for it (Kafka
    # does not, for our consumers: allow_auto_create_topics is off): delete it with no pull
    # running, so that only the next look can notice.
    beat.stop()
    worker.stop()
    admin.delete_topics([doomed])
    wait_for(lambda: doomed not in admin.list_topics(), 30, "the topic deleted", cluster)
    later, last = send(kafka_bootstrap, kept, 20, 1)
    cluster.worker("w2")
    cluster.beat("beat2")

    wait_for(lambda: set(later) <= set(seen(redis_client, key_prefix)), 60,
             "records of the topic kept", cluster)  # fmt: skip
    wait_for(lambda: f"topic {doomed} is gone from cluster test" in cluster.logs_text(), 30,
             "the deleted topic dropped", cluster)  # fmt: skip
    assert stored(redis_client, key_prefix, kept) == {0: last[0] + 1}
    assert "Traceback" not in cluster.logs_text()
    registry = redis_client.hgetall(pipeline_key(key_prefix, "test", "workers", "many"))
    assert {k.decode() for k in registry} == {"@since", kept}
