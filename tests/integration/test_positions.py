"""Per-partition positions and resets against the real Redis and the real Kafka-protocol broker.

Written to hold on the test broker and on Apache Kafka alike: where an end offset matters,
records are produced one batch per record, and progress is measured by the offsets the
producer got back (see the notes on the test broker).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import arrow
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.integration.conftest import TopicFactory
from workers.config import Settings, StartPolicy
from workers.connections import Connections
from workers.pulling.positions import Positioner, reset_offsets
from workers.state.keys import Space
from workers.state.leases import Owner, RedisLeases
from workers.state.offsets import Checkpoint, RedisOffsetStore


@pytest.fixture
def cache(settings_factory: Callable[..., Settings]) -> Iterator[Connections]:
    cache = Connections(settings_factory())
    yield cache
    cache.close()


def produce(cache: Connections, topic: str, counts: dict[int, int]) -> dict[int, int]:
    """Send ``counts[p]`` records to each partition (batched); returns last offset + 1."""
    producer = cache.producer("common")
    futures = [
        producer.send(topic, value=f"{p}-{i}".encode(), partition=p)
        for p, n in counts.items()
        for i in range(n)
    ]
    producer.flush()
    ends: dict[int, int] = {}
    for f in futures:
        meta = f.get(timeout=30)
        ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
    return ends


def pull_once(
    cache: Connections, space: Space, leases: RedisLeases, partitions: list[int], expect: int
) -> int:
    """One pull cycle by hand: lease, position, read ``expect`` records, commit per partition."""
    store = RedisOffsetStore(cache.redis())
    consumer: KafkaConsumer = cache.consumer("common")
    held = leases.acquire(space, partitions).leases
    positions = Positioner(store, consumer, space, leases.token, StartPolicy("earliest")).prepare(
        held
    )
    tps = [TopicPartition(space.topic, p) for p in positions]
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, positions[tp.partition].offset)
    nexts: dict[int, int] = {}
    seen = 0
    deadline = time.monotonic() + 30
    while seen < expect and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=500).items():
            seen += len(records)
            nexts[tp.partition] = records[-1].offset + 1
    epochs = {lease.partition: lease.epoch for lease in held}
    checkpoints = [
        Checkpoint(p, o, epochs[p], positions[p].generation) for p, o in sorted(nexts.items())
    ]
    outcome = store.commit(space, leases.token, checkpoints)
    assert all(o.ok for o in outcome.values()), outcome
    return seen


def test_positions_are_per_partition_under_uneven_traffic(
    cache: Connections, new_topic: TopicFactory, key_prefix: str
) -> None:
    topic = new_topic(3)
    space = Space(key_prefix, "common", "g1", topic)
    leases = RedisLeases(cache.redis(), Owner.current(), ttl=30)
    store = RedisOffsetStore(cache.redis())

    first = produce(cache, topic, {0: 120, 1: 7})
    seen_first = pull_once(cache, space, leases, [0, 1, 2], expect=127)
    after_first = {p: pos.offset for p, pos in store.stored(space).items()}
    second = produce(cache, topic, {1: 30, 2: 3})
    seen_second = pull_once(cache, space, leases, [0, 1, 2], expect=33)

    assert seen_first == 127 and seen_second == 33
    assert after_first == {0: first[0], 1: first[1], 2: 0}
    assert {p: pos.offset for p, pos in store.stored(space).items()} == {
        0: first[0],  # untouched by the second round
        1: second[1],
        2: second[2],
    }
    assert (first[0], first[1], second[1], second[2]) == (120, 7, 37, 3)


def test_reset_by_time_against_the_broker(
    cache: Connections, new_topic: TopicFactory, key_prefix: str, kafka_bootstrap: str
) -> None:
    topic = new_topic(1)
    space = Space(key_prefix, "common", "g1", topic)
    store = RedisOffsetStore(cache.redis())
    # One batch per record, spaced, so broker append times and create times both order them.
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=0)
    sent_at: list[arrow.Arrow] = []
    for i in range(5):
        sent_at.append(arrow.utcnow())
        producer.send(topic, value=f"r{i}".encode(), partition=0).get(timeout=30)
        time.sleep(0.3)
    producer.close()
    consumer = cache.consumer("common")
    between = sent_at[2].shift(seconds=-0.15)  # after record 1 was appended, before record 2

    at_time = reset_offsets(store, consumer, space, between.isoformat())
    before_all = reset_offsets(store, consumer, space, "-1h")
    after_all = reset_offsets(store, consumer, space, "+1h")
    epoch_ms = reset_offsets(store, consumer, space, f"@{int(between.float_timestamp * 1000)}")

    assert [r.after for r in at_time] == [2]
    assert [(r.before, r.after) for r in before_all] == [(2, 0)]
    assert [(r.before, r.after) for r in after_all] == [(0, 5)]  # past the end maps to the end
    assert [r.after for r in epoch_ms] == [2]
    assert store.stored(space)[0].generation == 4  # every reset bumped the generation


def test_reset_dry_run_changes_nothing_on_redis(
    cache: Connections, new_topic: TopicFactory, key_prefix: str
) -> None:
    topic = new_topic(2)
    space = Space(key_prefix, "common", "g1", topic)
    store = RedisOffsetStore(cache.redis())
    produce(cache, topic, {0: 3})
    store.reset(space, {0: 1})

    rows = reset_offsets(store, cache.consumer("common"), space, "earliest", dry_run=True)

    assert [(r.partition, r.before, r.after) for r in rows] == [(0, 1, 0), (1, None, 0)]
    assert {p: pos.offset for p, pos in store.stored(space).items()} == {0: 1}


def test_offsets_have_no_ttl_unless_configured(cache: Connections, key_prefix: str) -> None:
    client = cache.redis()
    forever = RedisOffsetStore(client)
    short_lived = RedisOffsetStore(client, ttl=7200)
    space_a = Space(key_prefix, "common", "forever", "t")
    space_b = Space(key_prefix, "common", "short", "t")

    forever.reset(space_a, {0: 1})
    short_lived.reset(space_b, {0: 1})

    assert client.ttl(space_a.key("offsets")) == -1
    assert 7000 < client.ttl(space_b.key("offsets")) <= 7200
