"""Start policies, out-of-range repair and resets, on the twins (no sockets)."""

from __future__ import annotations

import logging

import arrow
import pytest
from kafka import TopicPartition

from tests.unit.fakes import ManualClock
from workers.config import StartPolicy
from workers.pulling.positions import Positioner, reset_offsets, start_offsets, target_offsets
from workers.state.keys import Space
from workers.state.leases import Lease, Owner
from workers.state.offsets import Checkpoint, Position
from workers.testing import MemoryConsumer, MemoryLeases, MemoryLog, MemoryOffsetStore, MemoryState

TOPIC = "events"
SPACE = Space("t", "common", "g1", TOPIC)
T0 = 1_700_000_000_000  # epoch ms of the first record


@pytest.fixture
def log() -> MemoryLog:
    log = MemoryLog()
    log.create_topic(TOPIC, 3)
    for i in range(10):  # partition 0: ten records, one second apart
        log.append(TOPIC, 0, f"r{i}".encode(), timestamp_ms=T0 + i * 1000)
    log.append(TOPIC, 1, b"only", timestamp_ms=T0)
    return log


@pytest.fixture
def consumer(log: MemoryLog) -> MemoryConsumer:
    return MemoryConsumer(log)


@pytest.fixture
def state() -> MemoryState:
    return MemoryState(clock=ManualClock())


@pytest.fixture
def store(state: MemoryState) -> MemoryOffsetStore:
    return MemoryOffsetStore(state)


@pytest.fixture
def leases(state: MemoryState) -> MemoryLeases:
    return MemoryLeases(state, Owner("h", 1), ttl=30)


def positioner(
    store: MemoryOffsetStore,
    consumer: MemoryConsumer,
    leases: MemoryLeases,
    start: str = "earliest",
    out_of_range: str = "earliest",
) -> Positioner:
    policy = StartPolicy.parse(start)
    return Positioner(store, consumer, SPACE, leases.token, policy, out_of_range)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("earliest", {0: 0, 1: 0, 2: 0}),
        ("latest", {0: 10, 1: 1, 2: 0}),
        ("latest-3", {0: 7, 1: 0, 2: 0}),  # never before the log start
        ("latest-0", {0: 10, 1: 1, 2: 0}),
    ],
)
def test_start_policies(consumer: MemoryConsumer, policy: str, expected: dict[int, int]) -> None:
    assert start_offsets(consumer, TOPIC, [0, 1, 2], StartPolicy.parse(policy)) == expected


def test_start_at_a_time_maps_through_offsets_for_times(consumer: MemoryConsumer) -> None:
    at = arrow.get((T0 + 4500) / 1000).isoformat()

    starts = start_offsets(consumer, TOPIC, [0, 1], StartPolicy.parse(at))

    assert starts == {0: 5, 1: 1}  # partition 1 has nothing after that time: its end


def test_relative_start_time_resolves_against_now(consumer: MemoryConsumer) -> None:
    now = arrow.get((T0 + 9500) / 1000)

    starts = start_offsets(consumer, TOPIC, [0], StartPolicy.parse("-3s"), now=now)

    assert starts == {0: 7}


def test_start_is_stored_at_once_and_does_not_drift(
    store: MemoryOffsetStore, consumer: MemoryConsumer, leases: MemoryLeases, log: MemoryLog
) -> None:
    held = leases.acquire(SPACE, [0, 1, 2]).leases
    prep = positioner(store, consumer, leases, start="latest")

    first = prep.prepare(held)
    log.append(TOPIC, 0, b"late")
    second = prep.prepare(held)

    assert {p: pos.offset for p, pos in first.items()} == {0: 10, 1: 1, 2: 0}
    assert second == first
    assert store.stored(SPACE)[0] == Position(10, 0)


def test_partition_whose_lease_is_lost_is_left_out(
    store: MemoryOffsetStore, consumer: MemoryConsumer, leases: MemoryLeases
) -> None:
    held = leases.acquire(SPACE, [0]).leases
    stranger = Lease(1, 99, held[0].deadline)  # a lease this owner does not hold

    ready = positioner(store, consumer, leases).prepare([*held, stranger])

    assert set(ready) == {0}
    assert store.read(SPACE, [1])[1].offset is None


@pytest.mark.parametrize(("policy", "offset", "skipped"), [("earliest", 6, 4), ("latest", 10, 8)])
def test_offset_below_log_start_is_moved_and_skips_counted(
    store: MemoryOffsetStore,
    consumer: MemoryConsumer,
    leases: MemoryLeases,
    log: MemoryLog,
    caplog: pytest.LogCaptureFixture,
    policy: str,
    offset: int,
    skipped: int,
) -> None:
    held = leases.acquire(SPACE, [0]).leases
    store.commit(SPACE, leases.token, [Checkpoint(0, 2, held[0].epoch, 0)])
    log.trim(TOPIC, 0, 6)  # retention removed offsets 0-5; we had read up to 2

    ready = positioner(store, consumer, leases, out_of_range=policy).prepare(held)

    assert ready[0] == Position(offset, 0)
    assert store.read(SPACE, [0])[0].offset == offset
    assert store.skipped(SPACE) == {0: skipped}
    assert f"{skipped} records skipped" in caplog.text
    assert any(r.levelno == logging.WARNING for r in caplog.records)


@pytest.mark.parametrize(("policy", "offset"), [("earliest", 0), ("latest", 10)])
def test_offset_past_the_end_reported_by_fetch_is_moved_back(
    store: MemoryOffsetStore,
    consumer: MemoryConsumer,
    leases: MemoryLeases,
    policy: str,
    offset: int,
) -> None:
    held = leases.acquire(SPACE, [0]).leases
    store.commit(SPACE, leases.token, [Checkpoint(0, 50, held[0].epoch, 0)])
    prep = positioner(store, consumer, leases, out_of_range=policy)
    position = prep.prepare(held)[0]  # past the end is only known when the broker says so
    tp = TopicPartition(TOPIC, 0)
    consumer.assign([tp])
    consumer.seek(tp, 50)

    with pytest.raises(Exception, match="OffsetOutOfRange") as failure:
        consumer.poll()
    moved = prep.on_out_of_range(held[0], position)

    assert failure.value.args[0] == {tp: 50}
    assert moved == Position(offset, 0)
    assert store.read(SPACE, [0])[0].offset == offset
    assert store.skipped(SPACE) == {}  # nothing was lost, the offset was just wrong


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("earliest", {0: 0, 1: 0, 2: 0}),
        ("latest", {0: 10, 1: 1, 2: 0}),
        ("4", {0: 4, 1: 4, 2: 4}),
        (arrow.get((T0 + 2500) / 1000).isoformat(), {0: 3, 1: 1, 2: 0}),
        (f"@{(T0 + 2500) // 1000}", {0: 2, 1: 1, 2: 0}),  # epoch seconds: 2.0 s after T0
        (f"@{T0 + 2500}", {0: 3, 1: 1, 2: 0}),  # epoch milliseconds
        ("-100d", {0: 0, 1: 0, 2: 0}),  # before the first record
        ("+1h", {0: 10, 1: 1, 2: 0}),  # past the last record: the end
    ],
)
def test_reset_targets(consumer: MemoryConsumer, target: str, expected: dict[int, int]) -> None:
    now = arrow.get((T0 + 10_000) / 1000)

    assert target_offsets(consumer, TOPIC, [0, 1, 2], target, now=now) == expected


def test_unknown_reset_target_is_refused(consumer: MemoryConsumer) -> None:
    with pytest.raises(ValueError, match="not a point in time"):
        target_offsets(consumer, TOPIC, [0], "yesterday-ish")


def test_reset_sets_chosen_partitions_and_reports_before_after(
    store: MemoryOffsetStore, consumer: MemoryConsumer, leases: MemoryLeases
) -> None:
    held = leases.acquire(SPACE, [0, 1]).leases
    e = {lease.partition: lease.epoch for lease in held}
    store.commit(SPACE, leases.token, [Checkpoint(0, 9, e[0], 0), Checkpoint(1, 1, e[1], 0)])

    rows = reset_offsets(store, consumer, SPACE, "3", partitions=[0, 2])

    assert [(r.partition, r.before, r.after) for r in rows] == [(0, 9, 3), (2, None, 3)]
    assert store.stored(SPACE) == {0: Position(3, 1), 1: Position(1, 0), 2: Position(3, 1)}


def test_dry_run_changes_nothing(
    store: MemoryOffsetStore, consumer: MemoryConsumer, leases: MemoryLeases
) -> None:
    held = leases.acquire(SPACE, [0]).leases
    store.commit(SPACE, leases.token, [Checkpoint(0, 9, held[0].epoch, 0)])

    rows = reset_offsets(store, consumer, SPACE, "earliest", dry_run=True)

    assert [(r.partition, r.before, r.after) for r in rows] == [
        (0, 9, 0),
        (1, None, 0),
        (2, None, 0),
    ]
    assert store.stored(SPACE) == {0: Position(9, 0)}


def test_reset_wins_over_a_pull_prepared_before_it(
    store: MemoryOffsetStore, consumer: MemoryConsumer, leases: MemoryLeases
) -> None:
    held = leases.acquire(SPACE, [0]).leases
    position = positioner(store, consumer, leases).prepare(held)[0]

    reset_offsets(store, consumer, SPACE, "latest", partitions=[0])
    late = store.commit(SPACE, leases.token, [Checkpoint(0, 5, held[0].epoch, position.generation)])

    assert late[0].status == "reset"
    assert store.read(SPACE, [0])[0] == Position(10, 1)


def test_reset_of_a_partition_the_topic_lacks_is_refused(
    store: MemoryOffsetStore, consumer: MemoryConsumer
) -> None:
    with pytest.raises(ValueError, match=r"no partitions \[7\]"):
        reset_offsets(store, consumer, SPACE, "earliest", partitions=[7])


def test_reset_of_a_missing_topic_is_refused(store: MemoryOffsetStore, log: MemoryLog) -> None:
    consumer = MemoryConsumer(log)

    with pytest.raises(ValueError, match="does not exist"):
        reset_offsets(store, consumer, Space("t", "common", "g1", "nope"), "earliest")


class UnknownTimestampConsumer(MemoryConsumer):
    """Answers a lookup with no match as (offset 0, timestamp -1): the protocol's "unknown"."""

    def offsets_for_times(self, timestamps):  # type: ignore[no-untyped-def]
        from kafka.structs import OffsetAndTimestamp

        return {tp: OffsetAndTimestamp(0, -1, -1) for tp in timestamps}


def test_time_lookup_without_a_timestamp_means_no_record(log: MemoryLog) -> None:
    consumer = UnknownTimestampConsumer(log)

    assert target_offsets(consumer, TOPIC, [0, 1], "+1h") == {0: 10, 1: 1}
