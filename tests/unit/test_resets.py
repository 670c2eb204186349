"""Unit tests of ``workers.ops.resets`` on the twins: where each reset target sends each
partition, shifts clamped at the log's edges, and what a reset stores."""

from __future__ import annotations

from collections.abc import Iterable

import arrow
import pytest

from workers.ops.context import OpsError
from workers.ops.resets import Target, apply_reset, plan_reset, to_target
from workers.pulling.positions import ResetRow
from workers.state.keys import Space
from workers.state.offsets import Position
from workers.testing import MemoryConsumer, MemoryLog, MemoryOffsetStore

TOPIC = "events"
SPACE = Space("t", "common", "g1", TOPIC)
T0 = 1_700_000_000_000  # epoch ms of the first record
NOW = arrow.get(T0 / 1000).shift(hours=1)


@pytest.fixture
def consumer() -> MemoryConsumer:
    """Partition 0: records 0-9 one second apart, the first 2 removed by retention;
    partition 1: one record; partition 2: empty."""
    log = MemoryLog()
    log.create_topic(TOPIC, 3)
    for i in range(10):
        log.append(TOPIC, 0, f"r{i}".encode(), timestamp_ms=T0 + i * 1000)
    log.trim(TOPIC, 0, 2)
    log.append(TOPIC, 1, b"only", timestamp_ms=T0)
    return MemoryConsumer(log)


@pytest.fixture
def store() -> MemoryOffsetStore:
    return MemoryOffsetStore()


def offsets(rows: list[ResetRow]) -> dict[int, tuple[int | None, int]]:
    return {r.partition: (r.before, r.after) for r in rows}


def test_a_shift_moves_each_partition_from_its_committed_offset_and_stops_at_the_edges(
    consumer: MemoryConsumer, store: MemoryOffsetStore
) -> None:
    # Arrange
    store.reset(SPACE, {0: 5, 1: 1, 2: 0})

    # Act
    back = plan_reset(store, consumer, SPACE, Target("shift_by", "-2", shift=-2), [0, 1, 2])
    far = plan_reset(store, consumer, SPACE, Target("shift_by", "-4", shift=-4), [0])
    ahead = plan_reset(store, consumer, SPACE, Target("shift_by", "+3", shift=3), [0, 1, 2])
    stay = plan_reset(store, consumer, SPACE, Target("shift_by", "0", shift=0), [0])

    # Assert
    assert offsets(back.rows) == {0: (5, 3), 1: (1, 0), 2: (0, 0)}
    assert back.clamped == {1, 2}  # 1-2 and 0-2 are before the log start, 0
    assert offsets(far.rows) == {0: (5, 2)} and far.clamped == {0}  # retention: starts at 2
    assert offsets(ahead.rows) == {0: (5, 8), 1: (1, 1), 2: (0, 0)}
    assert ahead.clamped == {1, 2}
    assert offsets(stay.rows) == {0: (5, 5)} and stay.clamped == frozenset()
    assert back.bounds == {0: (2, 10), 1: (0, 1), 2: (0, 0)}


def test_a_shift_of_partitions_with_nothing_committed_is_refused_naming_them(
    consumer: MemoryConsumer, store: MemoryOffsetStore
) -> None:
    store.reset(SPACE, {1: 1})

    with pytest.raises(OpsError) as info:
        plan_reset(store, consumer, SPACE, Target("shift_by", "-1", shift=-1), [0, 1, 2])

    assert str(info.value) == (
        "cannot shift partition(s) 0, 2 of 'events': nothing is committed there yet; reset "
        "them with --to first, or choose the others with --partition"
    )


class BrokenStore(MemoryOffsetStore):
    """A store whose partition 1 holds an offset that is not one (tampered with)."""

    def read(self, space: Space, partitions: Iterable[int]) -> dict[int, Position]:
        found = super().read(space, partitions)
        if 1 in found:
            found[1] = Position(None, 0, "offsets field 1: offset 'x' is not an integer")
        return found


def test_a_shift_from_a_stored_offset_that_is_not_one_is_refused(
    consumer: MemoryConsumer,
) -> None:
    says = r"cannot shift partition 1 of 'events': its stored offset is not valid \(offsets field"
    with pytest.raises(OpsError, match=says):
        plan_reset(BrokenStore(), consumer, SPACE, Target("shift_by", "1", shift=1), [0, 1])


def test_a_datetime_or_a_duration_goes_to_the_first_record_at_or_after_it(
    consumer: MemoryConsumer, store: MemoryOffsetStore
) -> None:
    # Arrange: 5.5 s after the first record; 10 minutes before the first record
    mid = Target("to_datetime", "x", when=arrow.get((T0 + 5500) / 1000))
    early = Target("by_duration", "PT70M", when=NOW.shift(minutes=-70))

    # Act
    at_mid = plan_reset(store, consumer, SPACE, mid, [0, 1, 2])
    at_early = plan_reset(store, consumer, SPACE, early, [0, 1])

    # Assert: past the last record is the log end
    assert offsets(at_mid.rows) == {0: (None, 6), 1: (None, 1), 2: (None, 0)}
    assert offsets(at_early.rows) == {0: (None, 2), 1: (None, 0)}
    assert at_mid.clamped == frozenset()


def test_to_edges_and_offsets_keep_their_meaning(
    consumer: MemoryConsumer, store: MemoryOffsetStore
) -> None:
    earliest = plan_reset(store, consumer, SPACE, to_target("earliest", NOW), [0, 1])
    latest = plan_reset(store, consumer, SPACE, to_target("latest", NOW), [0, 1])
    beyond = plan_reset(store, consumer, SPACE, to_target("20", NOW), [0, 1])

    assert offsets(earliest.rows) == {0: (None, 2), 1: (None, 0)}
    assert offsets(latest.rows) == {0: (None, 10), 1: (None, 1)}
    assert offsets(beyond.rows) == {0: (None, 20), 1: (None, 20)}
    assert beyond.outside() == [0, 1] and latest.outside() == []


def test_a_to_time_is_fixed_once_relative_to_now() -> None:
    relative = to_target("-1h", NOW)
    epoch = to_target(f"@{T0}", NOW)

    assert relative.when == NOW.shift(hours=-1) and relative.time_ms == T0
    assert epoch.time_ms == T0
    assert to_target("latest", NOW).when is None and to_target("007", NOW).text == "007"


def test_a_plan_from_a_file_sets_only_its_partitions(
    consumer: MemoryConsumer, store: MemoryOffsetStore
) -> None:
    store.reset(SPACE, {0: 5, 1: 1, 2: 0})
    target = Target("from_file", "plan.csv", offsets={2: 0, 0: 3})

    plan = plan_reset(store, consumer, SPACE, target, [0, 1, 2])
    done = apply_reset(store, SPACE, plan, target)

    assert offsets(done) == {0: (5, 3), 2: (0, 0)}
    assert {p: pos.offset for p, pos in store.read(SPACE, [0, 1, 2]).items()} == {
        0: 3, 1: 1, 2: 0,
    }  # fmt: skip


def test_a_reset_bumps_the_generation_and_reports_what_was_before(
    consumer: MemoryConsumer, store: MemoryOffsetStore
) -> None:
    store.reset(SPACE, {0: 5})
    target = Target("shift_by", "-1", shift=-1)
    plan = plan_reset(store, consumer, SPACE, target, [0])

    done = apply_reset(store, SPACE, plan, target)

    assert done == [ResetRow(0, 5, 4)]
    assert store.read(SPACE, [0])[0] == Position(4, 2)


@pytest.mark.parametrize(
    ("target", "phrase"),
    [
        (Target("to", "latest"), "to latest"),
        (Target("shift_by", "-5", shift=-5), "by -5"),
        (Target("shift_by", "5", shift=5), "by +5"),
        (Target("to_datetime", "2026-11-24T10:00+08:00",
                when=arrow.get("2026-11-24T02:00:00Z")), "to 2026-11-24T02:00:00.000Z"),
        (Target("by_duration", "PT1H", when=arrow.get("2026-11-24T09:00:00Z")),
         "to 2026-11-24T09:00:00.000Z (PT1H before now)"),
        (Target("from_file", "plan.csv"), "from plan.csv"),
        (Target("from_file", "-"), "from the plan on stdin"),
    ],
)  # fmt: skip
def test_each_target_names_itself_for_the_question(target: Target, phrase: str) -> None:
    assert target.phrase() == phrase
