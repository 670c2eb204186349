"""Kafka's copy of the committed offsets (``workers.pulling.kafka_copy``) on the twins: what is
copied and when, how failures are handled and logged, and the way back when Redis lost them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest

from tests.unit.fakes import PagedConsumer
from tests.unit.pulling_world import SPACE, TOPIC, World, pipeline
from workers.exceptions import RecoverableError
from workers.kafka.group_offsets import Committed, writer
from workers.pulling.kafka_copy import LOG_EVERY_SECONDS, REFRESH_SECONDS, CopyState, KafkaCopy
from workers.state.keys import Space
from workers.testing.memory_groups import MemoryGroupOffsets, MemoryGroups

INTERVAL = 5.0


@dataclass
class Copies:
    """A ``KafkaCopy`` of the world's pipeline into a twin of Kafka's group offsets, and what
    it noted (``workers.state.copies``)."""

    world: World
    groups: MemoryGroups = field(default_factory=MemoryGroups)
    noted: list[tuple[dict[int, int], int]] = field(default_factory=list)

    def make(self, interval: float = INTERVAL, timeout: float = 2.0) -> KafkaCopy:
        return KafkaCopy(
            pipeline(start=self.world.puller().pipeline.start),
            SPACE,
            self.world.store,
            MemoryGroupOffsets(self.groups, "g1"),
            interval=interval,
            timeout=timeout,
            state=CopyState(),
            note=lambda offsets, at_ms: self.noted.append((dict(offsets), at_ms)),
            clock=self.world.clock,
            wall=lambda: 1_700_000_000.0,
        )

    def in_kafka(self) -> dict[int, int]:
        return {p: c.offset for (_, _, p), c in sorted(self.groups.offsets.items())}


@pytest.fixture
def copies(world: World) -> Copies:
    return Copies(world)


def test_a_beat_pull_copies_what_redis_committed_and_the_next_pull_catches_up(
    world: World, copies: Copies
) -> None:
    world.fill(0, 5)
    world.fill(1, 3)
    copy = copies.make()

    world.puller(kafka_copy=copy).cycle()  # copies at its start: the start policy's offsets
    first = copies.in_kafka()
    world.clock.advance(INTERVAL)
    world.puller(kafka_copy=copy).cycle()  # and at the next start what the pipeline finished

    assert first == {0: 0, 1: 0, 2: 0}
    assert copies.in_kafka() == world.stored() == {0: 5, 1: 3, 2: 0}
    assert copies.noted[-1] == ({0: 5, 1: 3}, 1_700_000_000_000)  # only what changed


def test_kafka_never_gets_more_than_the_pipeline_finished(world: World, copies: Copies) -> None:
    world.fill(0, 6)
    dispatcher = world.dispatcher(finish=False)  # the stages have not finished anything yet
    copy = copies.make()

    world.puller(dispatcher=dispatcher, kafka_copy=copy).cycle()
    world.clock.advance(INTERVAL)
    copy.copy([0, 1, 2])
    before = copies.in_kafka()
    dispatcher.finish_batch(0)  # the first batch of 3 records finishes
    world.clock.advance(INTERVAL)
    copy.copy([0, 1, 2])

    assert before == {0: 0, 1: 0, 2: 0}
    assert copies.in_kafka()[0] == world.stored()[0] == 3


def test_only_the_partitions_named_and_with_an_offset_are_copied(
    world: World, copies: Copies
) -> None:
    world.store.reset(SPACE, {0: 4, 1: 9})
    copy = copies.make()

    copy.copy([0, 2])  # 1 is held by another process; 2 has nothing stored

    assert copies.in_kafka() == {0: 4}


def test_copies_happen_at_most_once_per_interval_and_only_for_changes(
    world: World, copies: Copies
) -> None:
    world.store.reset(SPACE, {0: 4})
    copy = copies.make()
    copy.copy([0])
    world.store.reset(SPACE, {0: 6})

    copy.copy([0])  # not due yet
    early = copies.in_kafka()
    world.clock.advance(INTERVAL)
    copy.copy([0])
    world.clock.advance(INTERVAL)
    copy.copy([0])  # due, but nothing changed

    assert early == {0: 4}
    assert copies.in_kafka() == {0: 6}
    assert copies.groups.commits == 2


def test_a_reset_to_the_same_offset_is_copied_again(world: World, copies: Copies) -> None:
    world.store.reset(SPACE, {0: 4})
    copy = copies.make()
    copy.copy([0])
    copies.groups.offsets[("g1", TOPIC, 0)] = Committed(99)  # changed behind the copy's back

    world.store.reset(SPACE, {0: 4})  # same number, a new generation
    world.clock.advance(INTERVAL)
    copy.copy([0])

    assert copies.in_kafka() == {0: 4}


def test_unchanged_offsets_are_committed_again_after_an_hour(world: World, copies: Copies) -> None:
    world.store.reset(SPACE, {0: 4})
    copy = copies.make()
    copy.copy([0])

    world.clock.advance(REFRESH_SECONDS - 1)
    copy.copy([0])
    world.clock.advance(INTERVAL)
    copy.copy([0])

    assert copies.groups.commits == 2  # Kafka drops a memberless group's offsets otherwise


def test_each_copy_waits_at_most_the_interval_or_the_cluster_timeout(
    world: World, copies: Copies
) -> None:
    world.store.reset(SPACE, {0: 4})
    slow = copies.make(interval=3.0, timeout=6.0)
    quick = copies.make(interval=30.0, timeout=6.0)

    slow.copy([0])
    quick.copy([0])

    assert isinstance(slow.group, MemoryGroupOffsets) and slow.group.timeouts == [3.0]
    assert isinstance(quick.group, MemoryGroupOffsets) and quick.group.timeouts == [6.0]


def test_a_failing_copy_never_fails_the_pull_and_is_logged_once_per_five_minutes(
    world: World, copies: Copies, caplog: pytest.LogCaptureFixture
) -> None:
    world.fill(0, 3)
    world.store.reset(SPACE, {0: 0, 1: 0, 2: 0})  # running already: nothing to restore
    copies.groups.down = True
    copy = copies.make()
    caplog.set_level(logging.INFO, logger="workers.pulling.kafka_copy")

    summaries = []
    for _ in range(4):  # four pulls, each after the interval: each tries once, and fails
        summaries.append(world.puller(kafka_copy=copy).cycle())
        world.clock.advance(INTERVAL)
    quiet = len(caplog.records)
    world.clock.advance(LOG_EVERY_SECONDS)
    world.puller(kafka_copy=copy).cycle()
    copies.groups.down = False
    world.clock.advance(INTERVAL)
    world.puller(kafka_copy=copy).cycle()

    assert summaries[0].records == 3 and world.stored()[0] == 3  # the pull went on
    lines = [r.getMessage() for r in caplog.records]
    assert quiet == 1 and "not updated: cannot commit" in lines[0]
    assert "pipeline alarms" in lines[0] and "group g1" in lines[0]
    assert "still failing: 5 attempts in 320 s" in lines[1]
    assert "updated again after 5 failed attempts" in lines[2]
    assert len(lines) == 3
    assert copies.in_kafka() == {0: 3, 1: 0, 2: 0}


def test_a_redis_failure_while_copying_is_logged_not_raised(
    world: World, copies: Copies, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def read(self, space: Space, partitions: object) -> object:
            raise RecoverableError("cannot read offsets: Connection refused")

    copy = copies.make()
    copy.store = Broken()  # type: ignore[assignment]

    with caplog.at_level(logging.WARNING):
        copy.copy([0])

    assert "Connection refused" in caplog.text
    assert copies.groups.commits == 0


def test_a_long_lived_cycle_copies_while_it_runs(world: World, copies: Copies) -> None:
    world.fill(0, 6)
    consumer = PagedConsumer(world.log, clock=world.clock, poll_seconds=1.0)
    copy = copies.make(interval=2.0)
    puller = world.puller(
        pipeline(max_seconds=10.0, lease_ttl_seconds=30.0),
        consumer=consumer,
        until_caught_up=False,
        kafka_copy=copy,
    )

    summary = puller.cycle()

    # The records were finished within the first polls; a copy every 2 s of the 10 s after.
    assert summary.stopped_by == "max_seconds"
    assert copies.in_kafka() == world.stored() == {0: 6, 1: 0, 2: 0}
    assert copies.groups.commits == 2  # the start policy's offsets, then the finished ones


def test_the_commit_names_this_package_the_key_prefix_and_the_pipeline(
    world: World, copies: Copies
) -> None:
    world.store.reset(SPACE, {0: 4})

    copies.make().copy([0])

    metadata = copies.groups.offsets[("g1", TOPIC, 0)].metadata
    assert metadata == writer(SPACE, "alarms") == "celery-kafka-workers prefix=t pipeline=alarms"
