"""The ``workers`` command's argument types: what they accept, and the one line they refuse
with (the integration tests run them against real services)."""

from __future__ import annotations

from typing import Any

import click
import pytest

from workers.cli.params import AppPath, ModuleName, Number, ResetTarget, TopicName


@pytest.mark.parametrize(
    ("kind", "text", "value"),
    [(float, "10", 10.0), (float, " 2.5 ", 2.5), (float, "1e2", 100.0), (int, "7", 7),
     (int, "+3", 3)],
)  # fmt: skip
def test_numbers_accept_ascii_decimals_in_range(kind: type, text: str, value: float) -> None:
    assert Number(kind, 0, 300).convert(text, None, None) == value


@pytest.mark.parametrize(
    "text", ["nan", "inf", "-inf", "1e400", "-1", "301", "١٠", "1_0", "", "5\n", "0x10", "1.5"]
)
def test_numbers_refuse_what_is_not_a_finite_ascii_number_in_range(text: str) -> None:
    # Act
    with pytest.raises(click.BadParameter) as info:
        Number(int if text == "1.5" else float, 0, 300).convert(text, None, None)

    # Assert
    assert info.value.message.endswith("between 0 and 300")
    assert "\n" not in info.value.message


@pytest.mark.parametrize(
    ("text", "value"),
    [("earliest", "earliest"), ("latest", "latest"), ("0", "0"), ("007", "7"),
     ("9223372036854775807", "9223372036854775807"), ("-1h", "-1h"), ("@1700000000", "@1700000000"),
     ("2026-11-24T10:00+08:00", "2026-11-24T10:00+08:00")],
)  # fmt: skip
def test_reset_targets_accepted(text: str, value: str) -> None:
    assert ResetTarget().convert(text, None, None) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("9223372036854775808", "'9223372036854775808' is beyond the largest Kafka offset, "
         "9223372036854775807 (offsets are signed 64-bit)"),
        ("1" + "0" * 30, f"'1{'0' * 30}' is beyond the largest Kafka offset, 9223372036854775807 "
         "(offsets are signed 64-bit)"),
        ("-5", "'-5' is a negative offset: offsets start at 0 (for a time before now, give a "
         "unit: -5m, -2h, -1d)"),
        ("-99999999999d", "'-99999999999d' is before the epoch (1970-01-01): times must fall "
         "between 1970-01-01 and 9999-12-31 UTC; or earliest, latest, an offset"),
        ("@1e30", "'1e30' is not a point in time; use ISO 8601 (2026-11-24T10:00+08:00), epoch "
         "seconds or milliseconds, 'now', or a relative form such as -1h, -30m, -2d; or "
         "earliest, latest, an offset"),
        ("٣", "'٣' is not a point in time; use ISO 8601 (2026-11-24T10:00+08:00), epoch "
         "seconds or milliseconds, 'now', or a relative form such as -1h, -30m, -2d; or "
         "earliest, latest, an offset"),
    ],
)  # fmt: skip
def test_reset_targets_refused_in_one_line(text: str, message: str) -> None:
    # Act
    with pytest.raises(click.BadParameter) as info:
        ResetTarget().convert(text, None, None)

    # Assert
    assert info.value.message == message


@pytest.mark.parametrize(
    ("kind", "good", "bad"),
    [
        (TopicName(), "alarm-events.dlq", ["bad topic!", "t" * 250, "..", ".", "t\n", ""]),
        (ModuleName(), "proj.settings", ["", "../x", "a..b", "x\ny", "a-b", "x" * 201]),
        (AppPath(), "proj.celery:app", ["", ":", "a b", "mod:", "mod:a.b", "mod:1x"]),
    ],
)
def test_names_are_checked_before_anything_runs(kind: Any, good: str, bad: list[str]) -> None:
    # Assert
    assert kind.convert(good, None, None) == good
    for text in bad:
        with pytest.raises(click.BadParameter):
            kind.convert(text, None, None)
