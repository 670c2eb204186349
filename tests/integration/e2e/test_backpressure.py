"""End to end, on the Redis broker and on RabbitMQ: while the first stage's queue holds more
than the pipeline's ``max_queue_length`` messages, pulls stop (``stopped_by: backlog``) and hand
off nothing more; once workers drain that queue, pulls read on and every record arrives once."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.integration.brokers import ON_EVERY_BROKER, Broker
from tests.integration.e2e.conftest import ClusterFactory
from tests.integration.e2e.harness import produce, wait_for
from tests.integration.e2e.test_delivery import pipeline, seen, uids, values, wait_delivered

pytestmark = [pytest.mark.slow, ON_EVERY_BROKER]

LIMIT = 3


def test_pulls_stop_while_the_first_stages_queue_is_over_its_limit(
    celery_cluster: ClusterFactory, celery_broker: Broker, new_topic, kafka_bootstrap: str,
    redis_client, key_prefix: str,
) -> None:  # fmt: skip
    topic = new_topic(1)  # one partition: one pull at a time hands off
    ids = uids(200)
    last = produce(kafka_bootstrap, topic, values(ids), partitions=1)
    stages = f"stages-{uuid.uuid4().hex[:8]}"
    config = pipeline(topic, batch_size=10, max_queue_length=LIMIT, queue=stages,
                      redrive_seconds=300.0)  # no re-drive while the queue waits  # fmt: skip
    cluster = celery_cluster({"events": config})
    cluster.worker("pulls")  # pulls only: nobody consumes the stages' queue yet
    cluster.beat()

    wait_for(lambda: celery_broker.depth(stages) > LIMIT, 60, "a queue over its limit", cluster)
    wait_for(lambda: "'stopped_by': 'backlog'" in cluster.logs_text(tail=100_000), 60,
             "a pull stopped by the backlog", cluster)  # fmt: skip
    time.sleep(2)  # pulls every 0.3 s: without the limit they would hand off more here
    held = celery_broker.depth(stages)
    cluster.worker("stages", queues=stages)
    wait_delivered(cluster, redis_client, key_prefix, topic, ids, last)

    assert held == LIMIT + 1  # the hand-off that went over the limit, then nothing
    counts = seen(redis_client, key_prefix)
    assert set(counts) == set(ids)
    assert [uid for uid, n in counts.items() if n != 1] == []
