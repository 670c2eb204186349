"""Unit tests of ``workers.config.timeparse``: the points in time operators may write."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import arrow
import pytest

from workers.config.timeparse import parse_time, to_millis

NOW = arrow.get("2026-11-24T10:00:00+00:00")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2026-11-24T10:00:00+08:00", "2026-11-24T02:00:00+00:00", id="iso-zone"),
        pytest.param("2026-11-24T10:00:00Z", "2026-11-24T10:00:00+00:00", id="iso-z"),
        pytest.param("2026-11-24T10:00:00", "2026-11-24T10:00:00+00:00", id="iso-no-zone-is-utc"),
        pytest.param("2026-11-24", "2026-11-24T00:00:00+00:00", id="iso-date"),
        pytest.param(" 2026-11-24T10:00 ", "2026-11-24T10:00:00+00:00", id="iso-spaces"),
        pytest.param("1700000000", "2023-11-14T22:13:20+00:00", id="epoch-seconds-text"),
        pytest.param(1_700_000_000, "2023-11-14T22:13:20+00:00", id="epoch-seconds-int"),
        pytest.param(1_700_000_000.5, "2023-11-14T22:13:20.500000+00:00", id="epoch-float"),
        pytest.param("1700000000123", "2023-11-14T22:13:20.123000+00:00", id="epoch-ms-text"),
        pytest.param(1_700_000_000_123, "2023-11-14T22:13:20.123000+00:00", id="epoch-ms-int"),
        pytest.param(0, "1970-01-01T00:00:00+00:00", id="epoch-zero"),
        pytest.param(99_999_999_999, "5138-11-16T09:46:39+00:00", id="below-ms-threshold"),
        pytest.param(100_000_000_000, "1973-03-03T09:46:40+00:00", id="at-ms-threshold"),
    ],
)
def test_absolute_times(text: str | float, expected: str) -> None:
    # Act
    when = parse_time(text, now=NOW)

    # Assert
    assert when.isoformat() == expected
    assert when.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("-1h", -3600),
        ("-30m", -1800),
        ("+15s", 15),
        ("-2d", -2 * 86400),
        ("-1w", -604800),
        ("-500ms", -0.5),
        (" - 1.5 h ", -5400),
        ("now", 0),
        ("NOW", 0),
    ],
)
def test_relative_times(text: str, seconds: float) -> None:
    # Act
    when = parse_time(text, now=NOW)

    # Assert
    assert (when - NOW).total_seconds() == seconds
    assert when.utcoffset() == NOW.utcoffset()


def test_relative_time_is_taken_from_now_in_utc() -> None:
    # Arrange
    now = arrow.get("2026-11-24T18:00:00+08:00")

    # Act
    when = parse_time("-1h", now=now)

    # Assert
    assert when.isoformat() == "2026-11-24T09:00:00+00:00"


def test_without_now_the_current_time_is_used() -> None:
    # Arrange
    before = arrow.utcnow()

    # Act
    when = parse_time("-1h")

    # Assert
    after = arrow.utcnow()
    assert before.shift(hours=-1) <= when <= after.shift(hours=-1)


@pytest.mark.parametrize(
    "text",
    ["", "garbage", "yesterday", "1h", "-1y", "--1h", "-5", "12:00 tomorrow", True, False],
)
def test_garbage_is_a_value_error_naming_the_forms(text: Any) -> None:
    # Act
    with pytest.raises(ValueError) as info:
        parse_time(text, now=NOW)

    # Assert
    assert repr(text) in str(info.value)


@pytest.mark.parametrize("value", [-1, -1.5, -1_700_000_000_000])
def test_negative_epoch_is_a_value_error(value: float) -> None:
    with pytest.raises(ValueError, match="before the epoch"):
        parse_time(value, now=NOW)


def test_to_millis() -> None:
    # Arrange
    when = arrow.get("2023-11-14T22:13:20.123+00:00")

    # Act
    millis = to_millis(when)

    # Assert
    assert millis == 1_700_000_000_123


OUT = "times must fall between 1970-01-01 and 9999-12-31 UTC"
FORMS = (
    "is not a point in time; use ISO 8601 (2026-11-24T10:00+08:00), epoch seconds or "
    "milliseconds, 'now', or a relative form such as -1h, -30m, -2d"
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-99999999999d", f"'-99999999999d' is before the epoch (1970-01-01): {OUT}"),
        ("+99999999999d", f"'+99999999999d' is after 9999-12-31: {OUT}"),
        ("-9999999999999999w", f"'-9999999999999999w' is before the epoch (1970-01-01): {OUT}"),
        ("-1e30h", f"'-1e30h' {FORMS}"),
        ("1e30", f"'1e30' {FORMS}"),
        ("99999-01-01", f"'99999-01-01' {FORMS}"),
        ("0001-01-01", f"'0001-01-01' is before the epoch (1970-01-01): {OUT}"),
        ("1" + "0" * 30, f"'1{'0' * 30}' is after 9999-12-31: {OUT}"),
        ("nan", f"'nan' {FORMS}"),
        ("inf", f"'inf' {FORMS}"),
        ("-٣h", f"'-٣h' {FORMS}"),
        ("٣٣٣٣٣٣", f"'٣٣٣٣٣٣' {FORMS}"),
        ("now\n", f"'now\\n' {FORMS}"),
        ("-1h\n", f"'-1h\\n' {FORMS}"),
        ("x" * 500, f"'{'x' * 79}… (502 characters) {FORMS}"),
        (float("nan"), f"nan {FORMS}"),
        (float("inf"), f"inf is after 9999-12-31: {OUT}"),
        (10**400, f"a number of more than 77 digits is after 9999-12-31: {OUT}"),
        (-(10**400), f"a number of more than 77 digits is before the epoch (1970-01-01): {OUT}"),
        (1e30, f"1e+30 is after 9999-12-31: {OUT}"),
    ],
)
def test_absurd_times_are_one_line_value_errors(text: Any, message: str) -> None:
    # Act
    with pytest.raises(ValueError) as info:
        parse_time(text, now=NOW)

    # Assert
    assert str(info.value) == message


def test_the_edges_of_the_range_are_times() -> None:
    # Act
    first, last = parse_time(0, now=NOW), parse_time("9999-12-31T23:59:59Z", now=NOW)

    # Assert
    assert (to_millis(first), to_millis(last)) == (0, 253_402_300_799_000)
