"""The pull cycle on the librdkafka consumer adapter (over the twin of librdkafka's handle): what
it asks of a consumer — seeks, pauses and resumes at ``max_in_flight``, re-reads for
re-drives, repairs of positions outside the log — gives the same deliveries as on the twin
consumer (see the puller tests of the same names)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("confluent_kafka", reason="confluent-kafka (the [confluent] extra) is absent")

from tests.unit.fake_confluent import FakeRdKafkaConsumer  # noqa: E402
from tests.unit.pulling_world import SPACE, TOPIC, World, offsets, pipeline  # noqa: E402
from workers.kafka.rdkafka import RdKafkaConsumer  # noqa: E402
from workers.testing import MemoryConsumer  # noqa: E402

BUDGET = 60.0


class Hooked:
    """The adapter, calling ``before_poll(n)`` before its n-th poll (n from 1)."""

    def __init__(self, consumer: RdKafkaConsumer, before_poll: Callable[[int], None]) -> None:
        self._consumer = consumer
        self._before_poll = before_poll
        self.polls = 0

    def poll(self, *args: Any, **kwargs: Any) -> Any:
        self.polls += 1
        self._before_poll(self.polls)
        return self._consumer.poll(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


def adapter(world: World) -> RdKafkaConsumer:
    return RdKafkaConsumer(
        {"bootstrap_servers": ["k:9092"]},
        handle=lambda conf: FakeRdKafkaConsumer(world.log, conf),
        queries=lambda **_: MemoryConsumer(world.log),
    )


def test_every_record_of_every_partition_is_delivered_once_in_order(world: World) -> None:
    for p, count in ((0, 4), (1, 3), (2, 5)):
        world.fill(p, count)
    dispatcher = world.dispatcher()

    summary = world.puller(pipeline(batch_size=5), dispatcher=dispatcher, consumer=adapter(world))
    found = summary.cycle()

    assert [offsets(dispatcher, p) for p in (0, 1, 2)] == [[0, 1, 2, 3], [0, 1, 2], [0, 1, 2, 3, 4]]
    assert (found.records, found.stopped_by) == (12, "caught_up")
    assert world.stored() == {0: 4, 1: 3, 2: 5}


def test_a_partition_paused_at_max_in_flight_resumes_where_it_stopped(world: World) -> None:
    world.fill(0, 10)
    world.fill(1, 2)
    dispatcher = world.dispatcher(finish=False)
    puller = world.puller(
        pipeline(batch_size=2, max_in_flight=2), dispatcher=dispatcher, consumer=adapter(world)
    )

    def finish_all() -> None:
        for n in range(len(dispatcher.tickets)):
            dispatcher.finish_batch(n)

    first = puller.cycle()
    held = offsets(dispatcher, 0)
    second = puller.cycle()
    rest = []
    for _ in range(3):  # each cycle reads two more batches of partition 0
        finish_all()
        rest.append(puller.cycle())
    finish_all()

    assert (first.reached, held) == ({0: 4, 1: 2}, [0, 1, 2, 3])  # two batches of 2 in flight
    assert (second.stopped_by, second.records) == ("caught_up", 0)
    assert [r.records for r in rest] == [4, 2, 0]
    assert offsets(dispatcher, 0) == list(range(10))
    assert offsets(dispatcher, 1) == [0, 1]
    assert world.stored() == {0: 10, 1: 2, 2: 0}


def test_a_lost_batch_is_read_again_and_handed_off_when_due(world: World) -> None:
    world.fill(0, 4)
    dispatcher = world.dispatcher(finish=False)
    puller = world.puller(pipeline(batch_size=2), dispatcher=dispatcher, consumer=adapter(world))
    puller.cycle()
    dispatcher.finish_batch(1)  # the first batch was lost
    world.fill(0, 2)
    world.clock.advance(BUDGET)

    late = puller.cycle()
    for n in range(len(dispatcher.tickets)):
        dispatcher.finish_batch(n)

    assert late.redriven == 1
    assert dispatcher.delivered == [(0, 0), (0, 1), (0, 2), (0, 3), (0, 0), (0, 1), (0, 4), (0, 5)]
    assert dispatcher.tickets[2].slices == dispatcher.tickets[0].slices
    assert world.stored()[0] == 6


def test_an_offset_removed_by_retention_between_cycles_is_repaired(world: World) -> None:
    world.fill(0, 10)
    dispatcher = world.dispatcher()
    puller = world.puller(pipeline(max_records=3), dispatcher=dispatcher, consumer=adapter(world))
    puller.cycle()
    world.log.trim(TOPIC, 0, 6)

    summary = puller.cycle()

    assert world.store.skipped(SPACE) == {0: 3}
    assert offsets(dispatcher, 0) == [0, 1, 2, 6, 7, 8]
    assert (summary.stopped_by, summary.reached) == ("max_records", {0: 9})


def test_a_position_that_leaves_the_log_during_a_cycle_is_repaired(world: World) -> None:
    world.fill(0, 10)

    def retention(n: int) -> None:  # after the cycle took its positions, before its first poll
        if n == 1:
            world.fill(0, 10)
            world.log.trim(TOPIC, 0, 15)

    consumer = Hooked(adapter(world), retention)
    dispatcher = world.dispatcher()
    puller = world.puller(pipeline(batch_size=5), dispatcher=dispatcher, consumer=consumer)

    summary = puller.cycle()

    assert offsets(dispatcher, 0) == list(range(15, 20))
    assert world.store.skipped(SPACE) == {0: 15}
    assert (summary.stopped_by, summary.records, summary.reached) == ("caught_up", 5, {0: 20})
    assert world.stored()[0] == 20
