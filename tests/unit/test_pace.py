"""Unit tests of ``workers lag --watch``'s arithmetic (``workers.ops.pace``: rate, lag change,
time to catch up) and of how it draws (``workers.cli.screen``)."""

from __future__ import annotations

import io

import pytest

from workers.cli.screen import ERASE_BELOW, ERASE_LINE, HIDE_CURSOR, SHOW_CURSOR, Screen
from workers.ops.pace import Pace, Sample, pace


def sample(seconds: float, committed: dict[int, int], ends: dict[int, int]) -> Sample:
    return Sample(seconds, committed, {p: ends[p] - o for p, o in committed.items()})


def test_the_rate_is_records_committed_per_second_between_two_looks() -> None:
    # Arrange: 2 s apart; partition 0 commits 300 records, partition 1 100; 200 new records
    before = sample(10.0, {0: 1000, 1: 500}, {0: 2000, 1: 900})
    now = sample(12.0, {0: 1300, 1: 600}, {0: 2100, 1: 1000})

    # Act
    found = pace(before, now)

    # Assert: lag 1,400 -> 1,200 (200 fewer in 2 s): 1,200 / 100 per second = 12 s
    assert (found.rate, found.change, found.lag) == (200.0, -100.0, 1200)
    assert found.catch_up_seconds == 12.0
    assert found.catch_up_text() == "12s"


def test_a_lag_that_grows_or_stays_never_catches_up() -> None:
    before = sample(0.0, {0: 100}, {0: 200})
    growing = pace(before, sample(1.0, {0: 150}, {0: 300}))
    flat = pace(before, sample(1.0, {0: 150}, {0: 250}))

    assert (growing.rate, growing.change) == (50.0, 50.0)
    assert growing.catch_up_seconds is None and growing.catch_up_text() == "never"
    assert (flat.change, flat.catch_up_text()) == (0.0, "never")


def test_no_lag_is_caught_up_whatever_the_pace() -> None:
    first = pace(None, sample(0.0, {0: 5}, {0: 5}))
    later = pace(sample(0.0, {0: 0}, {0: 5}), sample(1.0, {0: 5}, {0: 5}))

    assert first.catch_up_seconds == later.catch_up_seconds == 0.0
    assert first.catch_up_text() == later.catch_up_text() == "caught up"


def test_the_first_look_knows_no_pace() -> None:
    found = pace(None, sample(5.0, {0: 5}, {0: 50}))

    assert (found.rate, found.change, found.lag) == (None, None, 45)
    assert found.catch_up_seconds is None and found.catch_up_text() == "-"


def test_a_pipeline_not_started_has_no_lag_and_no_pace() -> None:
    found = pace(Sample(0.0), Sample(1.0))

    assert found == Pace(None, None, None) and found.catch_up_text() == "-"


def test_a_partition_committed_only_in_the_second_look_does_not_count() -> None:
    # Arrange: partition 1 gets its first offset (9,000) between the two looks
    before = sample(0.0, {0: 100}, {0: 200})
    now = sample(2.0, {0: 140, 1: 9000}, {0: 200, 1: 9010})

    # Act
    found = pace(before, now)

    # Assert
    assert (found.rate, found.change, found.lag) == (20.0, -20.0, 70)
    assert found.catch_up_seconds == 3.5


def test_a_reset_backwards_counts_as_nothing_read() -> None:
    found = pace(sample(0.0, {0: 500}, {0: 500}), sample(1.0, {0: 100}, {0: 500}))

    assert (found.rate, found.change, found.catch_up_text()) == (0.0, 400.0, "never")


@pytest.mark.parametrize("elapsed", [0.0, -1.0])
def test_looks_without_time_between_them_know_no_pace(elapsed: float) -> None:
    found = pace(sample(5.0, {0: 1}, {0: 9}), sample(5.0 + elapsed, {0: 3}, {0: 9}))

    assert (found.rate, found.change) == (None, None)


def test_long_catch_ups_read_in_the_two_largest_units() -> None:
    assert Pace(1.0, -1.0, 7_500).catch_up_text() == "2h05m"


# -- the screen ----------------------------------------------------------------------------------


def test_off_a_terminal_snapshots_follow_each_other_with_a_blank_line_between() -> None:
    out = io.StringIO()
    screen = Screen(out)  # a StringIO is no terminal

    screen.draw(["a", "b"])
    screen.draw(["c"])
    screen.close()

    assert out.getvalue() == "a\nb\n\nc\n"


def test_on_a_terminal_each_snapshot_is_drawn_over_the_last() -> None:
    out = io.StringIO()
    screen = Screen(out, in_place=True)

    screen.draw(["one", "two"])
    screen.draw(["three"])
    screen.close()

    assert out.getvalue() == (
        f"{HIDE_CURSOR}one{ERASE_LINE}\ntwo{ERASE_LINE}\n{ERASE_BELOW}"
        f"\x1b[2A\rthree{ERASE_LINE}\n{ERASE_BELOW}{SHOW_CURSOR}"
    )


def test_on_a_terminal_lines_are_cut_to_its_width_so_none_wraps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "30")
    out = io.StringIO()

    Screen(out, in_place=True).draw(["x" * 100])

    assert f"{'x' * 29}{ERASE_LINE}\n" in out.getvalue() and "x" * 30 not in out.getvalue()


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("term", "in_place"), [("xterm-256color", True), ("dumb", False)])
def test_a_terminal_is_drawn_in_place_unless_it_is_dumb(
    monkeypatch: pytest.MonkeyPatch, term: str, in_place: bool
) -> None:
    monkeypatch.setenv("TERM", term)

    assert Screen(Tty()).in_place is in_place
