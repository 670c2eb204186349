"""Stored state that is out of range or of the wrong type or shape (tampered with by hand, or
left by a bug) is repaired loudly, naming the key, or refused loudly: never a silent stall,
skip or replay. A real Redis, a real broker, the real puller."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import redis
from kafka import KafkaConsumer

from tests.integration.conftest import TopicFactory
from tests.unit.fakes import RecordingDispatcher
from workers.config import PipelineConfig, Settings, StartPolicy
from workers.connections import Connections
from workers.exceptions import OffsetStoreError
from workers.kafka.deadletter import DeadLetters
from workers.pulling.positions import reset_offsets
from workers.pulling.puller import Puller
from workers.state.keys import Space
from workers.state.leases import Owner, RedisLeases
from workers.state.ledger_redis import RedisLedger
from workers.state.offsets import MAX_OFFSET, Position, RedisOffsetStore


@dataclass
class Bench:
    """One pipeline's topic (2 partitions, 5 records each) and a puller on real services."""

    cache: Connections
    client: redis.Redis
    space: Space
    store: RedisOffsetStore
    ledger: RedisLedger

    def puller(self, dispatcher: RecordingDispatcher, token: str = "owner-a") -> Puller:
        config = PipelineConfig(
            name="p", cluster="common", topic=self.space.topic, group=self.space.group,
            tasks=("t",), start=StartPolicy("earliest"), max_seconds=3.0,
        )  # fmt: skip
        return Puller(
            config,
            space=self.space,
            store=self.store,
            leases=RedisLeases(self.client, Owner("h", 1), 30.0, token=token),
            ledger=self.ledger,
            consumer=self.cache.consumer("common"),
            dispatcher=dispatcher,
            dead_letters=DeadLetters(lambda: self.cache.producer("common"), "common", "dlq"),
            budget=60.0,
        )

    def pull(self) -> tuple[list[tuple[int, int]], dict[int, int]]:
        """One cycle whose batches finish at once: (what was delivered, committed offsets)."""
        dispatcher = RecordingDispatcher(ledger=self.ledger)
        puller = self.puller(dispatcher)
        try:
            puller.cycle()
        finally:
            puller.release()
        stored = self.store.stored(self.space)
        return dispatcher.delivered, {p: pos.offset for p, pos in stored.items() if pos.offset}


@pytest.fixture
def bench(
    settings_factory: Callable[..., Settings], new_topic: TopicFactory, key_prefix: str
) -> Iterator[Bench]:
    topic = new_topic(2)
    cache = Connections(settings_factory())
    producer = cache.producer("common")
    for p in (0, 1):
        for i in range(5):
            producer.send(topic, value=b'{"n": %d}' % i, partition=p).get(30)
    client = cache.redis()
    space = Space(key_prefix, "common", "g", topic)
    yield Bench(cache, client, space, RedisOffsetStore(client), RedisLedger(client))
    cache.close()


def everything() -> list[tuple[int, int]]:
    return [(p, o) for p in (0, 1) for o in range(5)]


@pytest.mark.parametrize(
    ("stored", "problem"),
    [
        (b"abc", "'abc' is not an integer"),
        (b"-5", "-5 is negative"),
        (b"1" + b"0" * 30, "is beyond the largest offset kept"),
        (b"4.5", "'4.5' is not an integer"),
        (b"", "'' is not an integer"),
    ],
)
def test_a_broken_stored_offset_is_repaired_by_the_out_of_range_policy_and_named(
    bench: Bench, caplog: pytest.LogCaptureFixture, stored: bytes, problem: str
) -> None:
    bench.pull()  # everything read once: committed at the end
    bench.client.hset(bench.space.key("offsets"), "1", stored)

    with caplog.at_level(logging.ERROR):
        delivered, committed = bench.pull()

    # Partition 1 is read again from its start (policy 'earliest'), partition 0 is untouched.
    assert delivered == [(1, o) for o in range(5)]
    assert committed == {0: 5, 1: 5}
    [line] = [r.getMessage() for r in caplog.records if "repaired as a reset" in r.getMessage()]
    assert f"{bench.space.key('offsets')} field 1: offset " in line and problem in line


def test_a_broken_generation_is_repaired_without_moving_the_offset(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    bench.pull()
    bench.client.hset(bench.space.key("generations"), "0", "not-a-number")

    with caplog.at_level(logging.ERROR):
        delivered, committed = bench.pull()

    assert delivered == [] and committed == {0: 5, 1: 5}
    assert bench.store.read(bench.space, [0])[0] == Position(5, 1)
    assert any(
        "generation 'not-a-number' is not an integer" in r.getMessage() for r in caplog.records
    )


@pytest.mark.parametrize(
    "break_it",
    [
        pytest.param(lambda c, k: c.hset(k, "token", "ghost"), id="no-epoch-no-expiry"),
        pytest.param(lambda c, k: c.hset(k, mapping={"token": "g", "epoch": "x"}), id="bad-epoch"),
        pytest.param(lambda c, k: (c.hset(k, "epoch", "3"), c.pexpire(k, 60_000)), id="no-owner"),
        pytest.param(lambda c, k: c.set(k, "a string"), id="wrong-type"),
    ],
)
def test_a_broken_lease_is_deleted_instead_of_blocking_its_partition_forever(
    bench: Bench, caplog: pytest.LogCaptureFixture, break_it: Callable[..., object]
) -> None:
    break_it(bench.client, bench.space.key("lease", 0))

    with caplog.at_level(logging.ERROR):
        delivered, committed = bench.pull()

    assert sorted(delivered) == everything() and committed == {0: 5, 1: 5}
    assert any(bench.space.key("lease", 0) in r.getMessage() for r in caplog.records)


def test_broken_epochs_and_members_are_repaired(bench: Bench) -> None:
    bench.client.hset(bench.space.key("epochs"), mapping={"0": "x", "1": "-3"})
    bench.client.set(bench.space.key("members"), "not a sorted set")

    delivered, committed = bench.pull()

    assert sorted(delivered) == everything() and committed == {0: 5, 1: 5}
    assert bench.client.type(bench.space.key("members")) in (b"zset", b"none")  # none: left


def test_malformed_ledger_entries_are_dropped_and_hold_nothing_back(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    bench.pull()
    key = bench.space.key("ledger", 0)
    bench.client.hset(key, mapping={"b:junk": "1 2 three", "b:x": "", "reach": "?", "odd": "1"})

    with caplog.at_level(logging.ERROR):
        delivered, committed = bench.pull()

    assert delivered == [] and committed == {0: 5, 1: 5}  # nothing read twice, nothing held
    assert not {b"b:junk", b"b:x"} & set(bench.client.hkeys(key))
    assert any(key in r.getMessage() for r in caplog.records)


def test_an_offsets_key_of_the_wrong_type_is_refused_loudly(bench: Bench) -> None:
    bench.client.set(bench.space.key("offsets"), "a string")

    with pytest.raises(OffsetStoreError) as refused:
        bench.pull()

    assert "WRONGTYPE" in str(refused.value) and str(bench.space) in str(refused.value)


@pytest.mark.parametrize("target", [str(MAX_OFFSET + 1), str(10**30), "1" * 5000])
def test_a_reset_beyond_the_largest_offset_is_refused(bench: Bench, target: str) -> None:
    consumer: KafkaConsumer = bench.cache.consumer("common")

    with pytest.raises(ValueError, match="beyond the largest offset kept"):
        reset_offsets(bench.store, consumer, bench.space, target)

    assert bench.store.stored(bench.space) == {}
