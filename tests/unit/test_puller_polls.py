"""How the puller polls: never far ahead of the hand-off, and a Beat-mode cycle under a steady
stream ends once it has read what the log held when it started (plus what came with it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kafka import TopicPartition

from tests.unit.fakes import PagedConsumer
from tests.unit.pulling_world import World, offsets, pipeline, sizes
from workers.testing import MemoryLog, MemoryRecord


class AskingConsumer(PagedConsumer):
    """Remembers how many records each poll asked for."""

    def __init__(self, log: MemoryLog, **kwargs: Any) -> None:
        super().__init__(log, **kwargs)
        self.asked: list[int | None] = []

    def poll(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> Mapping[TopicPartition, Sequence[MemoryRecord]]:
        self.asked.append(max_records)
        return super().poll(timeout_ms, max_records)


def test_a_poll_asks_for_no_more_than_500_records_or_a_batch(world: World) -> None:
    world.fill(0, 1200)
    small, large = AskingConsumer(world.log), AskingConsumer(world.log)

    world.puller(pipeline(batch_size=3, max_records=5000), consumer=small).cycle()
    world.store.reset(world.puller().space, {0: 0})
    world.puller(pipeline(batch_size=1000, max_records=5000), consumer=large).cycle()

    assert max(n or 0 for n in small.asked) == 500
    assert max(n or 0 for n in large.asked) == 1000


def test_the_last_poll_asks_only_for_what_the_cycle_may_still_read(world: World) -> None:
    world.fill(0, 1200)
    consumer = AskingConsumer(world.log)

    summary = world.puller(pipeline(max_records=700), consumer=consumer).cycle()

    assert consumer.asked == [500, 200]
    assert (summary.stopped_by, summary.records) == ("max_records", 700)


def stream(world: World, per_poll: int) -> PagedConsumer:
    """A consumer of a topic where ``per_poll`` records arrive before every poll, as under a
    steady stream: no poll ever comes back empty."""
    return PagedConsumer(
        world.log,
        clock=world.clock,
        poll_seconds=0.1,
        max_poll_records=4,
        before_poll=lambda n: world.fill(0, per_poll),
    )


def test_beat_cycle_under_a_steady_stream_ends_once_past_the_log_end(world: World) -> None:
    world.fill(0, 10)
    dispatcher = world.dispatcher()
    consumer = stream(world, 2)
    puller = world.puller(pipeline(max_seconds=60.0), dispatcher=dispatcher, consumer=consumer)

    summary = puller.cycle()

    # Polls of 4 while 2 arrive before each: the third poll returns 8-11, past offset 10 (the
    # end when the cycle started). Before, the cycle read on until max_seconds.
    assert (summary.stopped_by, summary.records, consumer.polls) == ("caught_up", 12, 3)
    assert offsets(dispatcher, 0) == list(range(12))
    assert world.stored()[0] == 12


def test_a_beat_cycle_that_read_up_to_the_log_end_stops_without_waiting_for_an_empty_poll(
    world: World,
) -> None:
    world.fill(0, 10)
    consumer = PagedConsumer(world.log)

    summary = world.puller(pipeline(), consumer=consumer).cycle()

    # An empty poll would only say what the log end already did, after the broker's wait
    assert (summary.stopped_by, summary.records, consumer.polls) == ("caught_up", 10, 1)


def test_a_beat_cycle_with_nothing_to_read_does_not_poll(world: World) -> None:
    fresh = PagedConsumer(world.log)
    first = world.puller(pipeline(), consumer=fresh).cycle()  # an empty topic, never read
    world.fill(0, 3)
    world.puller(pipeline()).cycle()  # reads the 3 records
    empty = PagedConsumer(world.log)

    again = world.puller(pipeline(), consumer=empty).cycle()

    assert (first.stopped_by, first.records, fresh.polls) == ("caught_up", 0, 0)
    assert (again.stopped_by, again.records, empty.polls) == ("caught_up", 0, 0)
    assert world.stored()[0] == 3


def test_long_lived_cycle_under_a_steady_stream_reads_on_to_its_time_limit(world: World) -> None:
    world.fill(0, 10)
    consumer = stream(world, 2)
    puller = world.puller(pipeline(max_seconds=3.0), consumer=consumer, until_caught_up=False)

    summary = puller.cycle()

    assert (summary.stopped_by, summary.records) == ("max_seconds", 70)  # 30 polls of 0.1 s


class ListingConsumer(PagedConsumer):
    """Counts the broker's offset listings (ListOffsets requests in kafka-python)."""

    def __init__(self, log: MemoryLog, **kwargs: Any) -> None:
        super().__init__(log, **kwargs)
        self.listings: list[str] = []

    def beginning_offsets(self, partitions: Any) -> Mapping[TopicPartition, int]:
        self.listings.append("beginning")
        return super().beginning_offsets(partitions)

    def end_offsets(self, partitions: Any) -> Mapping[TopicPartition, int]:
        self.listings.append("end")
        return super().end_offsets(partitions)


def test_a_beat_cycle_lists_the_log_ends_once_and_stops_where_they_were(world: World) -> None:
    world.fill(0, 10)
    world.fill(1, 4)
    world.puller(pipeline()).cycle()  # positions stored: the next cycle reads on from them
    world.fill(0, 3)
    consumer = ListingConsumer(world.log)

    summary = world.puller(pipeline(), consumer=consumer).cycle()

    assert consumer.listings == ["beginning", "end"]  # the bounds check's, reused for the stop
    assert (summary.stopped_by, summary.records, world.stored()[0]) == ("caught_up", 3, 13)


def test_under_a_trickle_a_batch_is_handed_off_once_it_lingered_its_time(world: World) -> None:
    dispatcher = world.dispatcher()
    consumer = stream(world, 2)  # 2 records before each poll of 0.1 s: never an empty poll
    config = pipeline(max_seconds=3.0, batch_size=100, batch_linger_seconds=0.25)
    puller = world.puller(config, dispatcher=dispatcher, consumer=consumer, until_caught_up=False)

    summary = puller.cycle()

    # A batch starts with a poll's records and goes after the first poll that ends 0.25 s or
    # more later: 4 polls of 2 records. Without the linger the cycle would hand off nothing
    # until its time limit (the batch of 100 never fills).
    assert sizes(dispatcher) == [8] * 7 + [4]  # the last one at the time limit
    assert offsets(dispatcher, 0) == list(range(summary.records))
