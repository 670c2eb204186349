"""The pull cycle and its owners: a lost lease or an operator reset mid-cycle, missing topics,
owners sharing the partitions, releasing leases, and the bound on leases of one cycle."""

from __future__ import annotations

import pytest

from tests.unit.pulling_world import SPACE, World, offsets, pipeline, steal
from workers.pulling.puller import TopicMissing
from workers.state.offsets import Position

# -- leases and resets mid-cycle ----------------------------------------------------------------


@pytest.mark.parametrize("how", ["stolen", "expired"])
def test_lost_lease_refuses_the_commit_and_ends_the_cycle(world: World, how: str) -> None:
    for p in (0, 1, 2):
        world.fill(p, 2)

    def lose(n: int) -> None:
        if n == 1 and how == "stolen":  # before partition 1's batch is recorded
            steal(world, 1)
        elif n == 1:
            world.clock.advance(30.0)

    dispatcher = world.dispatcher(on_hand_off=lose)
    puller = world.puller(pipeline(batch_size=2), dispatcher=dispatcher)

    summary = puller.cycle()

    assert (summary.stopped_by, summary.reached) == ("lease_lost", {0: 2})
    assert world.stored() == {0: 2, 1: 0, 2: 0}
    assert dispatcher.delivered == [(0, 0), (0, 1)]  # partition 1's records were not sent


def test_operator_reset_mid_cycle_wins_and_the_next_cycle_follows_it(world: World) -> None:
    for p in (0, 1, 2):
        world.fill(p, 2)

    def reset(n: int) -> None:
        if n == 1:  # before partition 1's batch is recorded
            world.store.reset(SPACE, {1: 1})

    dispatcher = world.dispatcher(on_hand_off=reset)
    puller = world.puller(pipeline(batch_size=2), dispatcher=dispatcher)

    first = puller.cycle()
    after_reset = world.store.read(SPACE, [1])[1]
    second = puller.cycle()

    assert (first.stopped_by, first.reached) == ("reset", {0: 2})
    assert after_reset == Position(1, 1)
    assert (second.stopped_by, second.reached) == ("caught_up", {1: 2, 2: 2})
    assert dispatcher.delivered == [(0, 0), (0, 1), (1, 1), (2, 0), (2, 1)]
    assert world.store.stored(SPACE) == {0: Position(2, 0), 1: Position(2, 1), 2: Position(2, 0)}


# -- topics and owners --------------------------------------------------------------------------


@pytest.mark.parametrize("topic", ["missing", "empty"])
def test_topic_without_partitions_raises_topic_missing(world: World, topic: str) -> None:
    world.log.create_topic("empty", 0)
    puller = world.puller(pipeline(topic=topic))

    with pytest.raises(TopicMissing) as missing:
        puller.cycle()

    assert str(missing.value) == (
        f"pipeline 'alarms': topic {topic!r} does not exist on cluster 'common'"
    )


def test_two_owners_split_the_partitions_and_never_deliver_a_record_twice(
    world: World,
) -> None:
    a_out, b_out = world.dispatcher(), world.dispatcher()
    a = world.puller(dispatcher=a_out, token="owner-a")
    b = world.puller(dispatcher=b_out, token="owner-b")
    cycles: list[tuple[str, list[int], str]] = []
    for _ in range(3):
        for p in (0, 1, 2):
            world.fill(p, 4)
        for name, puller in (("a", a), ("b", b)):
            summary = puller.cycle()
            cycles.append((name, summary.partitions, summary.stopped_by))

    everything = a_out.delivered + b_out.delivered
    assert cycles == [
        ("a", [0, 1, 2], "caught_up"),
        ("b", [], "no_partitions"),  # a took all before b joined
        ("a", [0, 1], "caught_up"),  # a's fair share is now 2 of 3
        ("b", [2], "caught_up"),
        ("a", [0, 1], "caught_up"),
        ("b", [2], "caught_up"),
    ]
    assert len(everything) == len(set(everything)) == 36
    assert offsets(b_out, 2) == list(range(4, 12))  # b continued where a committed
    assert world.stored() == {0: 12, 1: 12, 2: 12}


def test_release_frees_the_leases_for_another_owner(world: World) -> None:
    world.fill(0, 2)
    a = world.puller(token="owner-a")
    a.cycle()
    held = sorted(lease.partition for lease in a.held)

    a.release()
    b_summary = world.puller(token="owner-b").cycle()

    assert held == [0, 1, 2]
    assert a.held == []
    assert b_summary.partitions == [0, 1, 2]


def test_max_partitions_bounds_the_leases_of_one_cycle(world: World) -> None:
    for p in (0, 1, 2):
        world.fill(p, 1)
    dispatcher = world.dispatcher()

    summary = world.puller(pipeline(max_partitions=1), dispatcher=dispatcher).cycle()

    assert summary.partitions == [0]
    assert dispatcher.delivered == [(0, 0)]
