"""Scenario *origin*: the ``KafkaQueue.take(count)`` pattern of the monitoring platform this
package descends from, reading the same records as *raw* and *pull*, so that users can compare
the package with what they run today. Returns records per second.

What it models, per take (one call per batch of ``count`` = 500 records), in this order:

1. a Redis ``GET`` of the offset stored for (group, topic, partition);
2. ``consumer.seek`` of that partition to it (every take, as the origin does, also when the
   consumer is already there);
3. one kafka-python ``consumer.poll(timeout_ms=500, max_records=count)``;
4. a Redis ``SET`` of the new offset (the last record's + 1), before the batch goes anywhere
   (the origin's at-most-once order);
5. ONE Celery message whose only argument is the list of the record values as strings
   (decoded UTF-8, not parsed): ``app.send_task`` with the app's default serializer (kombu's
   JSON) and Celery's own ``argsrepr``, to a queue nobody consumes, on the Redis broker.

The Celery app, broker, queue naming and clean-up are the pull scenario's (``app_for``,
``names``, ``Services.cleanup``: the queue and the offset keys are deleted after the run), so
both pay the same broker; the difference is what is sent and how it is encoded. The consumers
are the raw scenario's (kafka-python's defaults, no group, no auto-commit; ``crc32c`` as
installed), one per partition, each with ``assign()`` of its partition: one origin queue per
partition. Takes go round-robin over the partitions not yet read to their end, until every
record is read; the clock runs from the first take to the send of the last record.

Where this differs from the origin, each so that every record is read exactly once:

- The origin stores ONE offset per topic and seeks every partition to it; here each partition
  has its own offset (a take still does one ``GET`` and one ``SET``).
- The origin's consumer polls all partitions at once; here a take reads only its partition,
  from that partition's consumer. One consumer for all partitions, with the others paused
  during a take, would be closer, but kafka-python 3.0.12 stalls on it: a partition whose
  fetched records were parked while it was paused is never restored nor fetched again once
  another partition's records are used up (``Fetcher.fetched_records`` only restores parked
  records into an empty slot that is ``None``, not an exhausted ``PartitionRecords``).
- Partitions start at offset 0 (the origin starts a new group near the tail).
"""

from __future__ import annotations

import time
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from bench.services import Services, app_for, names, pipeline

COUNT = 500
TASK = "bench.origin.take"  # never registered: nothing consumes the queue
GROUP = "bench-origin"


class OriginQueue:
    """The origin's take on one partition, with that partition's consumer."""

    def __init__(
        self, consumer: Any, redis: Any, app: Any, queue: str, tp: TopicPartition, key: str
    ) -> None:
        self.consumer = consumer
        self.redis = redis
        self.app = app
        self.queue = queue
        self.tp = tp
        self.key = key
        consumer.assign([tp])

    def take(self, count: int = COUNT) -> tuple[int, int]:
        """One take of at most ``count`` records. Returns (records taken, next offset)."""
        stored = self.redis.get(self.key)
        offset = int(stored) if stored is not None else 0
        self.consumer.seek(self.tp, offset)
        records = self.consumer.poll(timeout_ms=500, max_records=count).get(self.tp, [])
        if not records:
            return 0, offset
        reached = records[-1].offset + 1
        self.redis.set(self.key, reached)
        values = [record.value.decode("utf-8") for record in records]
        self.app.send_task(TASK, args=[values], queue=self.queue)
        return len(records), reached


def origin(svc: Services, topic: str, ends: dict[int, int]) -> float:
    """Takes of 500, round-robin over the partitions, until every record was taken."""
    prefix, queue = names()
    app = app_for(svc.env(prefix, queue, {"bench": pipeline(topic)}))
    client = svc.redis()
    consumers: list[Any] = []
    try:
        queues: dict[int, OriginQueue] = {}
        for p in sorted(ends):
            consumer = KafkaConsumer(
                bootstrap_servers=svc.kafka, enable_auto_commit=False, group_id=None
            )
            consumers.append(consumer)
            consumer.partitions_for_topic(topic)  # connected before the clock, as in pull
            key = f"{prefix}:offset:{GROUP}:{topic}:{p}"
            queues[p] = OriginQueue(consumer, client, app, queue, TopicPartition(topic, p), key)
        client.ping()
        with app.connection_for_write() as conn:
            conn.ensure_connection()
        total, taken = sum(ends.values()), 0
        left = [p for p in sorted(ends) if ends[p] > 0]
        reached: dict[int, int] = {}
        started = time.perf_counter()
        while left:
            for p in list(left):
                n, reached[p] = queues[p].take()
                taken += n
                if reached[p] >= ends[p]:
                    left.remove(p)
        seconds = time.perf_counter() - started
        if taken != total or any(reached.get(p, 0) != e for p, e in ends.items() if e > 0):
            raise RuntimeError(f"origin took {taken} records up to {reached}, expected {ends}")
        return total / seconds
    finally:
        for consumer in consumers:
            consumer.close()
        client.close()
        svc.cleanup(prefix, [queue])
