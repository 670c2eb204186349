"""The dead-letter brake: the tally of a run of verdicts, the window and ratio, runs in a row per
source, trips and resumes (on the twin, whose rule the Lua script follows: the contract in
``tests/integration/test_brake_contract.py`` holds them together); its settings; and a pull
whose records are all invalid, on the twins of the pulling world."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from tests.unit.config_support import base_conf
from tests.unit.pulling_world import DLQ, SPACE, TOPIC, World, pipeline
from workers.config import load_settings
from workers.exceptions import ConfigError
from workers.pulling import outbox
from workers.state.brake import PULL, Limits, MemoryBrake, Tally, Verdict
from workers.state.keys import Space

RATIO = Limits(window=100, max_ratio=0.5, max_consecutive=None)
IN_A_ROW = Limits(window=100, max_ratio=None, max_consecutive=10)


def dead(n: int) -> Tally:
    return Tally.of([True] * n)


def good(n: int) -> Tally:
    return Tally.of([False] * n)


# -- the tally -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ("", (0, 0, 0, 0, 0)),
        ("xxx", (3, 3, 3, 3, 3)),
        ("...", (3, 0, 0, 0, 0)),
        ("xx.xxx.x", (8, 6, 2, 1, 3)),
        (".xxxx..", (7, 4, 0, 0, 4)),
    ],
)
def test_a_tally_counts_the_dead_letters_at_the_head_the_tail_and_the_longest_run(
    verdicts: str, expected: tuple[int, ...]
) -> None:
    tally = Tally.of([c == "x" for c in verdicts])

    assert (tally.seen, tally.dead, tally.head, tally.tail, tally.longest) == expected
    assert tally.passed == tally.seen - tally.dead


# -- the ratio over a window ---------------------------------------------------------------


def test_more_than_the_ratio_of_a_window_trips_and_not_one_dead_letter_less() -> None:
    brake = MemoryBrake()
    mixed = Tally.of([i % 2 == 0 for i in range(100)])  # 50 of 100: exactly the limit

    at_limit = brake.report(SPACE, RATIO, PULL, mixed, 100)
    over = brake.report(SPACE, RATIO, "t.parse", dead(1), 0)  # a stage's: no records counted

    assert at_limit.tripped is False
    assert over.tripped is True and over.trip is not None
    assert (over.trip.reason, over.trip.source) == ("ratio", "t.parse")
    assert (over.trip.window_records, over.trip.window_dead, over.trip.ratio) == (100, 51, 0.51)


def test_a_full_window_starts_the_next_one_empty() -> None:
    brake = MemoryBrake()
    brake.report(SPACE, RATIO, PULL, Tally.of([True] * 50 + [False] * 50), 100)

    later = [brake.report(SPACE, RATIO, PULL, Tally.of([True] * 50 + [False] * 50), 100)]
    later.append(brake.report(SPACE, RATIO, PULL, dead(50), 50))  # 50 of 50 so far
    last = brake.report(SPACE, RATIO, PULL, dead(1), 1)  # the 51st of this window

    assert [v.tripped for v in later] == [False, False]
    assert last.tripped and last.trip is not None and last.trip.window_dead == 51


def test_a_ratio_of_zero_trips_on_the_first_dead_letter() -> None:
    strict = Limits(window=1000, max_ratio=0.0, max_consecutive=None)
    brake = MemoryBrake()

    assert brake.report(SPACE, strict, PULL, good(500), 500).tripped is False
    assert brake.report(SPACE, strict, PULL, Tally.of([False, True]), 2).tripped is True


# -- in a row ------------------------------------------------------------------------------


def test_dead_letters_in_a_row_add_up_over_reports_until_one_passes() -> None:
    brake = MemoryBrake()

    steps = [
        brake.report(SPACE, IN_A_ROW, "s", dead(6), 0).tripped,
        brake.report(SPACE, IN_A_ROW, "s", Tally.of([True] * 4 + [False]), 0).tripped,  # 10
        brake.report(SPACE, IN_A_ROW, "s", dead(10), 0).tripped,  # ended by the pass: 10
    ]
    trip = brake.report(SPACE, IN_A_ROW, "s", Tally.of([True, False]), 0)  # 11 in a row

    assert steps == [False, False, False]
    assert trip.tripped and trip.trip is not None
    assert (trip.trip.reason, trip.trip.consecutive) == ("consecutive", 11)


def test_each_source_has_its_own_run_and_passed_ends_one() -> None:
    brake = MemoryBrake()
    brake.report(SPACE, IN_A_ROW, PULL, dead(8), 8)
    brake.report(SPACE, IN_A_ROW, "t.parse", dead(8), 0)

    brake.passed(SPACE, "t.parse")
    parse = brake.report(SPACE, IN_A_ROW, "t.parse", dead(8), 0)
    pull = brake.report(SPACE, IN_A_ROW, PULL, dead(3), 3)

    assert parse.tripped is False  # 8 after the pass
    assert pull.tripped and pull.trip is not None and pull.trip.consecutive == 11


def test_a_run_longer_than_the_limit_inside_one_report_trips() -> None:
    brake = MemoryBrake()
    verdicts = [False] + [True] * 11 + [False]

    assert brake.report(SPACE, IN_A_ROW, PULL, Tally.of(verdicts), 13).tripped is True


# -- tripped, reminded, resumed ------------------------------------------------------------


def test_a_tripped_brake_refuses_every_report_and_trips_once() -> None:
    brake = MemoryBrake()
    first = brake.report(SPACE, IN_A_ROW, PULL, dead(11), 11)

    again = brake.report(SPACE, IN_A_ROW, "t.parse", good(5), 0)

    assert first.trip is not None and again == first.__class__(True, None)
    assert brake.trips == 1


def test_the_reminder_comes_at_most_once_per_interval() -> None:
    now = [1000.0]
    brake = MemoryBrake(clock=lambda: now[0])
    brake.report(SPACE, IN_A_ROW, PULL, dead(11), 11)

    seen = [brake.check(SPACE, remind_ms=60_000)[1]]
    now[0] += 59
    seen.append(brake.check(SPACE, remind_ms=60_000)[1])
    now[0] += 1
    seen.append(brake.check(SPACE, remind_ms=60_000)[1])
    seen.append(brake.check(SPACE, remind_ms=60_000)[1])

    assert seen == [False, False, True, False]  # the trip itself was the first error


def test_resume_clears_the_trip_and_every_count() -> None:
    brake = MemoryBrake()
    brake.report(SPACE, RATIO, PULL, dead(40), 40)
    both = Limits(window=100, max_ratio=0.5, max_consecutive=10)
    tripped = brake.report(SPACE, both, PULL, dead(11), 11)

    cleared = brake.resume(SPACE)
    after = brake.report(SPACE, both, PULL, dead(10), 10)

    assert tripped.trip is not None and cleared == tripped.trip
    assert after.tripped is False and brake.check(SPACE) == (None, False)
    assert brake.resume(SPACE) is None


# -- settings ------------------------------------------------------------------------------


def test_the_brake_is_on_by_default_and_each_limit_can_be_switched_off() -> None:
    conf = base_conf()
    default = load_settings(conf, {}).pipelines["alarms"]
    conf["workers_pipelines"]["alarms"].update(
        dead_letter_max_ratio=None, dead_letter_max_consecutive=None
    )
    off = load_settings(conf, {}).pipelines["alarms"]

    assert Limits.of(default) == Limits(1000, 0.5, 1000)
    assert Limits.of(off) is None


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("dead_letter_max_ratio", 1.5, "got 1.5; expected a value between 0 and 1"),
        ("dead_letter_max_ratio", "half", "expected a fraction between 0 and 1"),
        ("dead_letter_window", 5, "got 5; expected a value between 10 and 1000000"),
        ("dead_letter_max_consecutive", 0, "got 0; expected a value between 1 and 1000000000"),
        ("dead_letter_max_consecutive", True, "expected an integer between 1 and 1000000000"),
    ],
)
def test_a_bad_limit_is_one_line_naming_the_key(key: str, value: object, says: str) -> None:
    conf = base_conf()
    conf["workers_pipelines"]["alarms"][key] = value

    with pytest.raises(ConfigError) as caught:
        load_settings(conf, {})

    message = str(caught.value)
    assert message.startswith(f"workers_pipelines.alarms.{key}: ") and says in message
    assert "\n" not in message


def test_the_limits_come_from_the_environment_too() -> None:
    env = {
        "WORKERS_PIPELINE_ALARMS_DEAD_LETTER_MAX_RATIO": "0.25",
        "WORKERS_PIPELINE_ALARMS_DEAD_LETTER_WINDOW": "200",
        "WORKERS_PIPELINE_ALARMS_DEAD_LETTER_MAX_CONSECUTIVE": "none",
    }

    config = load_settings(base_conf(), env).pipelines["alarms"]
    with pytest.raises(ConfigError) as caught:
        load_settings(base_conf(), {"WORKERS_PIPELINE_ALARMS_DEAD_LETTER_WINDOW": "1"})

    assert Limits.of(config) == Limits(200, 0.25, None)
    assert str(caught.value).startswith(
        "workers_pipelines.alarms.dead_letter_window (from "
        "WORKERS_PIPELINE_ALARMS_DEAD_LETTER_WINDOW): got 1;"
    )


# -- a pull ----------------------------------------------------------------------------------


def bad(world: World, partition: int, count: int) -> None:
    for i in range(count):
        world.log.append(TOPIC, partition, b"not json %d" % i, key=b"k")


def test_a_pull_whose_records_trip_the_brake_stops_and_neither_dead_letters_nor_commits_them(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    config = pipeline(dead_letter_max_consecutive=5, dead_letter_max_ratio=None)
    brake = MemoryBrake(clock=world.clock)
    world.fill(0, 3)  # one good batch first
    bad(world, 0, 20)
    dispatcher = world.dispatcher()

    with caplog.at_level(logging.ERROR, logger="workers.state.brake"):
        tripped = world.puller(config, dispatcher=dispatcher, brake=brake).cycle()
        held = world.puller(config, dispatcher=dispatcher, brake=brake).cycle()

    assert (tripped.stopped_by, held.stopped_by) == ("brake", "brake")
    assert world.dead_letters() == [] and tripped.dead_lettered == 0
    assert world.stored()[0] == 3  # past the good batch, not into the bad records
    assert len(dispatcher.batches) == 1 and held.records == 0
    [error] = caplog.records
    assert "pipeline alarms: dead-letter brake tripped: 20 dead letters in a row from pull" in (
        error.getMessage()
    )
    assert "workers dlq resume alarms" in error.getMessage()


def test_after_a_fix_and_a_resume_the_pull_reads_the_held_records_again(world: World) -> None:
    broken = pipeline(dead_letter_max_consecutive=5, dead_letter_max_ratio=None)
    brake = MemoryBrake(clock=world.clock)
    bad(world, 1, 20)
    world.puller(broken, brake=brake).cycle()
    fixed = pipeline(codec="text", dead_letter_max_consecutive=5)  # the deploy that was meant
    dispatcher = world.dispatcher()

    still = world.puller(fixed, dispatcher=dispatcher, brake=brake).cycle()
    brake.resume(SPACE)
    after = world.puller(fixed, dispatcher=dispatcher, brake=brake).cycle()

    assert still.stopped_by == "brake" and still.records == 0
    assert after.delivered == 20 and world.dead_letters() == []
    assert world.stored()[1] == 20
    assert sorted(o for p, o in dispatcher.delivered if p == 1) == list(range(20))


def test_dead_letters_within_the_limits_go_out_as_before(world: World) -> None:
    config = pipeline(dead_letter_max_consecutive=5, dead_letter_window=10)
    brake = MemoryBrake(clock=world.clock)
    for _ in range(4):
        world.fill(2, 2)
        bad(world, 2, 1)

    summary = world.puller(config, brake=brake).cycle()

    assert summary.dead_lettered == 4 and summary.delivered == 8
    assert len(world.dead_letters()) == 4 and brake.state(SPACE) is None
    assert world.log.partition(DLQ, 0).end == 4


class CountingBrake(MemoryBrake):
    """Remembers each report: (records seen, dead letters)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__(clock)
        self.reports: list[tuple[int, int]] = []

    def report(
        self, space: Space, limits: Limits, source: str, tally: Tally, counted: int
    ) -> Verdict:
        self.reports.append((tally.seen, tally.dead))
        return super().report(space, limits, source, tally, counted)


def test_a_pull_of_clean_batches_reports_to_the_brake_once_per_cycle(world: World) -> None:
    config = pipeline(batch_size=10, dead_letter_window=1000)
    brake = CountingBrake(clock=world.clock)
    world.fill(0, 95)

    summary = world.puller(config, brake=brake).cycle()

    assert summary.batches == 10
    assert brake.reports == [(95, 0)]  # not one per batch


def test_decoded_records_are_reported_before_the_next_refusal_in_order(world: World) -> None:
    config = pipeline(batch_size=10, dead_letter_window=1000, dead_letter_max_consecutive=3)
    brake = CountingBrake(clock=world.clock)
    world.fill(0, 25)
    bad(world, 0, 2)
    world.fill(0, 25)

    summary = world.puller(config, brake=brake).cycle()

    # 20 in two clean batches held back, then a batch with the 2 refusals (reported with the
    # 20 before them: one tally, in order), the rest at the end of the cycle.
    assert sum(seen for seen, _ in brake.reports) == 52
    assert [dead for _, dead in brake.reports] == [2, 0]
    assert brake.reports[0][0] > 20
    assert summary.dead_lettered == 2 and summary.stopped_by == "caught_up"


def test_clean_records_are_reported_every_so_many_without_waiting_for_the_cycle(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "REPORT_EVERY", 20)
    config = pipeline(batch_size=10, dead_letter_window=10)
    brake = CountingBrake(clock=world.clock)
    world.fill(0, 45)

    world.puller(config, brake=brake).cycle()

    assert brake.reports == [(20, 0), (20, 0), (5, 0)]
