"""When Redis has no offset for a partition, a pull starts from Kafka's copy before the start
policy (``Positioner`` with ``workers.pulling.kafka_copy``), on the twins."""

from __future__ import annotations

import logging

import pytest

from tests.unit.fakes import HookedOffsetStore
from tests.unit.pulling_world import SPACE, TOPIC, World, offsets, pipeline
from workers.config import StartPolicy
from workers.exceptions import RecoverableError
from workers.kafka.group_offsets import Committed, writer
from workers.pulling.kafka_copy import CopyState, KafkaCopy
from workers.pulling.positions import Positioner
from workers.state.leases import Owner
from workers.state.offsets import OffsetStore
from workers.testing import MemoryConsumer, MemoryLeases
from workers.testing.memory_groups import MemoryGroupOffsets, MemoryGroups

LATEST = pipeline(start=StartPolicy("latest"))


def kafka_copy(world: World, groups: MemoryGroups, store: OffsetStore | None = None) -> KafkaCopy:
    return KafkaCopy(
        LATEST, SPACE, store or world.store, MemoryGroupOffsets(groups, "g1"),
        interval=5.0, timeout=2.0, state=CopyState(), clock=world.clock,
    )  # fmt: skip


def kafka_has(groups: MemoryGroups, offsets: dict[int, int], metadata: str | None = None) -> None:
    meta = writer(SPACE, "alarms") if metadata is None else metadata
    for p, o in offsets.items():
        groups.offsets[("g1", TOPIC, p)] = Committed(o, meta or None)


@pytest.fixture
def groups() -> MemoryGroups:
    return MemoryGroups()


def test_a_partition_redis_lost_starts_from_kafkas_copy_not_the_start_policy(
    world: World, groups: MemoryGroups, caplog: pytest.LogCaptureFixture
) -> None:
    world.fill(0, 10)
    world.fill(1, 4)
    kafka_has(groups, {0: 6})  # the pipeline had finished 0-5 of partition 0
    dispatcher = world.dispatcher()

    with caplog.at_level(logging.WARNING):
        world.puller(LATEST, dispatcher=dispatcher, kafka_copy=kafka_copy(world, groups)).cycle()

    assert offsets(dispatcher, 0) == [6, 7, 8, 9]  # none skipped, none from before
    assert offsets(dispatcher, 1) == []  # no copy in Kafka: 'latest'
    assert world.stored() == {0: 10, 1: 4, 2: 0}
    [line] = [r.getMessage() for r in caplog.records if "restored from Kafka" in r.getMessage()]
    assert "pipeline alarms" in line and "partitions 0 of events" in line and "0: 6" in line


def test_the_restored_offset_is_stored_like_a_start_and_logged_only_where_it_was(
    world: World, groups: MemoryGroups, caplog: pytest.LogCaptureFixture
) -> None:
    kafka_has(groups, {0: 3, 1: 5})
    world.fill(0, 8)
    world.fill(1, 8)

    def another_owner_first(mode: str) -> None:  # partition 1 got its start meanwhile
        if mode == "init":
            world.state.offsets.setdefault(SPACE, {})[1] = 7

    store = HookedOffsetStore(world.state, before_commit=another_owner_first)
    leases = MemoryLeases(world.state, Owner("h", 1), 30.0)
    held = leases.acquire(SPACE, [0, 1]).leases
    positioner = Positioner(
        store, MemoryConsumer(world.log), SPACE, leases.token, LATEST.start,
        kafka=kafka_copy(world, groups, store),
    )  # fmt: skip

    with caplog.at_level(logging.WARNING):
        prepared = positioner.prepare(held)

    assert {p: pos.offset for p, pos in prepared.items()} == {0: 3, 1: 7}
    [line] = [r.getMessage() for r in caplog.records if "restored from Kafka" in r.getMessage()]
    assert "partitions 0 of" in line and "1: 5" not in line


def test_a_restored_offset_outside_the_log_is_moved_by_the_out_of_range_policy(
    world: World, groups: MemoryGroups
) -> None:
    world.fill(0, 10)
    world.log.trim(TOPIC, 0, 8)  # retention removed 0-7
    kafka_has(groups, {0: 2})
    dispatcher = world.dispatcher()

    world.puller(LATEST, dispatcher=dispatcher, kafka_copy=kafka_copy(world, groups)).cycle()

    assert offsets(dispatcher, 0) == [8, 9]


def test_a_copy_written_by_something_else_is_not_used(
    world: World, groups: MemoryGroups, caplog: pytest.LogCaptureFixture
) -> None:
    world.fill(0, 10)
    kafka_has(groups, {0: 2}, metadata="celery-kafka-workers prefix=staging pipeline=alarms")
    dispatcher = world.dispatcher()

    with caplog.at_level(logging.WARNING):
        world.puller(LATEST, dispatcher=dispatcher, kafka_copy=kafka_copy(world, groups)).cycle()

    assert offsets(dispatcher, 0) == []  # the start policy: latest
    assert "was committed by 'celery-kafka-workers prefix=staging" in caplog.text
    assert "restored from Kafka" not in caplog.text


def test_a_copy_without_metadata_is_used(world: World, groups: MemoryGroups) -> None:
    world.fill(0, 10)
    kafka_has(groups, {0: 7}, metadata="")  # a broker that keeps none, or Kafka's own tools
    dispatcher = world.dispatcher()

    world.puller(LATEST, dispatcher=dispatcher, kafka_copy=kafka_copy(world, groups)).cycle()

    assert offsets(dispatcher, 0) == [7, 8, 9]


def test_when_kafka_cannot_be_asked_the_pull_fails_and_stores_nothing(
    world: World, groups: MemoryGroups
) -> None:
    world.fill(0, 10)
    groups.down = True
    dispatcher = world.dispatcher()
    puller = world.puller(LATEST, dispatcher=dispatcher, kafka_copy=kafka_copy(world, groups))

    with pytest.raises(RecoverableError, match="cannot read the offsets of group 'g1'"):
        puller.cycle()

    # Not the start policy instead: 'latest' would skip what Kafka's copy may still hold.
    assert world.stored() == {} and dispatcher.batches == []


def test_stored_offsets_are_never_replaced_by_kafkas_copy(
    world: World, groups: MemoryGroups
) -> None:
    world.fill(0, 10)
    world.store.reset(SPACE, {0: 8, 1: 0, 2: 0})
    kafka_has(groups, {0: 2})  # behind (or from elsewhere): Redis is the truth
    dispatcher = world.dispatcher()

    world.puller(LATEST, dispatcher=dispatcher, kafka_copy=kafka_copy(world, groups)).cycle()

    assert offsets(dispatcher, 0) == [8, 9]


def test_with_the_copy_off_the_start_policy_applies(world: World, groups: MemoryGroups) -> None:
    world.fill(0, 10)
    kafka_has(groups, {0: 2})
    dispatcher = world.dispatcher()

    world.puller(LATEST, dispatcher=dispatcher).cycle()

    assert offsets(dispatcher, 0) == []
