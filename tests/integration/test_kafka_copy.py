"""Kafka's copy of the committed offsets on the real broker and Redis: what Kafka's own group
API reports (the requests ``kafka-consumer-groups --describe`` sends: OffsetFetch for the
group's offsets, ListOffsets for the log ends) agrees with ``workers offsets show``; resets
update it at once; ``workers check`` reports the copies drifting apart.

Pulls run the real ``Puller`` in long-lived mode on the connection cache's clients, with a
dispatcher whose pipeline finishes each batch at once (``RecordingDispatcher``). Records are
produced one batch per record: the test broker's log end is the first offset of the last
batch + 1 (see the notes on it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from tests.integration.cli_support import Cli, pipeline, send_each
from tests.integration.conftest import TopicFactory
from tests.unit.fakes import RecordingDispatcher
from workers.config import load_settings
from workers.connections import Connections
from workers.kafka.deadletter import DeadLetters
from workers.pulling.engine import space_for
from workers.pulling.kafka_copy import kafka_copy_for
from workers.pulling.puller import Puller
from workers.state import copies
from workers.state.keys import Space
from workers.state.leases import Owner, RedisLeases
from workers.state.ledger_redis import RedisLedger
from workers.state.offsets import RedisOffsetStore
from workers.testing import wait_until

GROUP = "workers"  # the pipeline sets no group: workers_default_group


def group_offsets(admin: KafkaAdminClient, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets on ``topic`` as the broker's OffsetFetch returns them."""
    listing = getattr(admin, "list_group_offsets", None)  # kafka-python 3.x
    if listing is not None:
        found = listing({group: None})[group]
    else:  # kafka-python 2.x
        found = admin.list_consumer_group_offsets(group)
    return {tp.partition: meta.offset for tp, meta in found.items() if tp.topic == topic}


def log_ends(bootstrap: str, topic: str, partitions: list[int]) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        return {tp.partition: end for tp, end in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


@dataclass
class Rig:
    """Pipeline ``p`` on a fresh 3-partition topic, its settings those of ``cli``."""

    cli: Cli
    cache: Connections
    topic: str
    space: Space
    kafka: str

    def pull_until_copied(self) -> None:
        """Long-lived pull cycles until the pipeline finished what the log holds and Kafka's
        copy equals Redis's (bounded)."""
        settings = self.cache.settings
        config = settings.pipeline("p")
        client = self.cache.redis()
        ledger = RedisLedger(client)
        puller = Puller(
            config,
            space=self.space,
            store=RedisOffsetStore(client),
            leases=RedisLeases(client, Owner("h", 1), config.lease_ttl_seconds, token="owner"),
            ledger=ledger,
            consumer=self.cache.consumer("test"),
            dispatcher=RecordingDispatcher(ledger=ledger),
            dead_letters=DeadLetters(
                lambda: self.cache.producer("test"), "test", config.dead_letter_topic, timeout=30
            ),
            budget=60.0,
            until_caught_up=False,
            kafka_copy=kafka_copy_for(self.cache, config, self.space),
        )
        partitions = [0, 1, 2]
        ends = log_ends(self.kafka, self.topic, partitions)

        def copied() -> bool:
            puller.cycle()
            return self.redis() == ends and self.in_kafka() == ends

        try:
            wait_until(copied, 90, "the pipeline finished the log and Kafka's copy caught up")
        finally:
            puller.release()

    def redis(self) -> dict[int, int | None]:
        stored = RedisOffsetStore(self.cache.redis()).stored(self.space)
        return {p: pos.offset for p, pos in stored.items()}

    def in_kafka(self) -> dict[int, int]:
        return group_offsets_of(self.cache, self.topic)


def group_offsets_of(cache: Connections, topic: str) -> dict[int, int]:
    consumer = cache.group("test", GROUP)
    found = {p: consumer.committed(TopicPartition(topic, p), timeout_ms=10_000) for p in range(3)}
    return {p: o for p, o in found.items() if o is not None}


@pytest.fixture
def rig(cli: Cli, new_topic: TopicFactory, kafka_bootstrap: str) -> Iterator[Rig]:
    topic = new_topic(3)
    cli.conf["workers_pipelines"] = {
        "p": pipeline(
            topic, start="earliest", max_seconds=1.0, batch_size=2, kafka_commit_seconds=1
        )
    }
    settings = load_settings(cli.conf, environ={})
    cache = Connections(settings)
    yield Rig(cli, cache, topic, space_for(settings, settings.pipeline("p")), kafka_bootstrap)
    cache.close()


def show(cli: Cli) -> dict[str, Any]:
    doc = json.loads(cli("offsets", "show", "p", "--json", "--no-ages").stdout)
    [found] = doc["pipelines"]
    return found  # type: ignore[no-any-return]


def check(cli: Cli) -> dict[str, Any]:
    doc = json.loads(cli("check", "--json").stdout)
    [finding] = [f for f in doc["findings"] if f["what"] == "kafka copy p"]
    return finding  # type: ignore[no-any-return]


def test_kafkas_own_group_api_reports_the_lag_offsets_show_reports(
    rig: Rig, admin: KafkaAdminClient
) -> None:
    # Arrange: the pipeline mid-way through its topic: all it read finished and copied, then
    # more records arrive that nobody pulls yet.
    send_each(rig.kafka, rig.topic, {0: 5, 1: 3})
    rig.pull_until_copied()
    send_each(rig.kafka, rig.topic, {0: 4, 1: 1, 2: 2})

    # Act: what kafka-consumer-groups --describe computes, and what the workers say
    committed = group_offsets(admin, GROUP, rig.topic)
    ends = log_ends(rig.kafka, rig.topic, [0, 1, 2])
    shown = show(rig.cli)

    # Assert
    broker_lag = {p: ends[p] - committed[p] for p in ends}
    workers_lag = {row["partition"]: row["lag"] for row in shown["partitions"]}
    assert broker_lag == workers_lag == {0: 4, 1: 1, 2: 2}
    assert {row["partition"]: row["kafka_committed"] for row in shown["partitions"]} == committed
    assert shown["kafka_copy"] == "on"


def test_an_operator_reset_updates_kafkas_copy_at_once(rig: Rig, admin: KafkaAdminClient) -> None:
    send_each(rig.kafka, rig.topic, {0: 5, 1: 3})
    rig.pull_until_copied()

    result = rig.cli("offsets", "reset", "p", "--to", "earliest", "--partition", "0", "--yes")

    assert result.exit_code == 0, result.output
    assert "Kafka's copy (group workers) set to the same offsets" in result.output
    assert group_offsets(admin, GROUP, rig.topic) == {0: 0, 1: 3, 2: 0}


def test_check_is_content_while_the_copies_agree(rig: Rig) -> None:
    send_each(rig.kafka, rig.topic, {0: 2})
    rig.pull_until_copied()

    finding = check(rig.cli)

    assert finding["level"] == "ok"
    assert (
        finding["detail"] == "group workers: 3 partition(s) in step, 0 following (copied every 1 s)"
    )


def test_check_reports_redis_behind_kafka_after_it_lost_offsets(
    rig: Rig, redis_client: redis.Redis
) -> None:
    send_each(rig.kafka, rig.topic, {0: 4, 1: 2})
    rig.pull_until_copied()

    redis_client.hdel(rig.space.key("offsets"), "0")  # lost (a flush, a lagging replica)
    redis_client.hset(rig.space.key("offsets"), "1", 1)  # went back
    finding = check(rig.cli)

    assert finding["level"] == "warn" and finding["hint"] == "kafka copy"
    assert "Kafka's copy ahead of Redis (Redis lost or went back" in finding["detail"]
    assert "partition 0: Kafka 4 > Redis none; 1: Kafka 2 > Redis 1" in finding["detail"]


def test_check_reports_a_copy_that_stopped_following(rig: Rig, redis_client: redis.Redis) -> None:
    send_each(rig.kafka, rig.topic, {0: 3})
    rig.pull_until_copied()

    # The pipeline moved on and no pull copied it since (its last copy long ago).
    RedisOffsetStore(redis_client).reset(rig.space, {2: 1})
    hour_ago = int(time.time() * 1000) - 3_600_000
    copies.note(redis_client, rig.space, {0: 3, 1: 0, 2: 0}, hour_ago)
    finding = check(rig.cli)

    assert finding["level"] == "warn"
    assert "Kafka's copy behind Redis and not updated for 33 s" in finding["detail"]
    assert "partition 2: 1 behind, last copied 3600 s ago" in finding["detail"]
