"""Unit tests of ``workers.ops.timespec``: the date-times of ``--to-datetime`` and the durations
of ``--by-duration``."""

from __future__ import annotations

from datetime import timedelta

import arrow
import pytest

from workers.ops.timespec import before_now, parse_datetime, parse_duration

NOW = arrow.get("2026-11-24T10:00:00+00:00")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2026-11-24T10:00:00.000", "2026-11-24T10:00:00+00:00", id="kafka-no-zone"),
        pytest.param("2026-11-24T10:00:00.123+08:00", "2026-11-24T02:00:00.123000+00:00",
                     id="kafka-zone"),
        pytest.param("2026-11-24T10:00:00.123Z", "2026-11-24T10:00:00.123000+00:00", id="z"),
        pytest.param("2026-11-24T10:00:00.123z", "2026-11-24T10:00:00.123000+00:00", id="lower-z"),
        pytest.param("2026-11-24T10:00+0530", "2026-11-24T04:30:00+00:00", id="hhmm-zone"),
        pytest.param("2026-11-24T10:00:00-03", "2026-11-24T13:00:00+00:00", id="hh-zone"),
        pytest.param("2026-11-24T10:00", "2026-11-24T10:00:00+00:00", id="minutes"),
        pytest.param("2026-11-24T10:00:05", "2026-11-24T10:00:05+00:00", id="seconds"),
        pytest.param("2026-11-24T10:00:05,5", "2026-11-24T10:00:05.500000+00:00", id="comma"),
        pytest.param("2026-11-24T10:00:05.123456789Z", "2026-11-24T10:00:05.123456+00:00",
                     id="nanoseconds-cut-to-micro"),
        pytest.param(" 2026-11-24T10:00Z ", "2026-11-24T10:00:00+00:00", id="spaces"),
        pytest.param("1970-01-01T00:00:00Z", "1970-01-01T00:00:00+00:00", id="epoch"),
    ],
)  # fmt: skip
def test_datetimes_in_kafka_consumer_groups_form_without_a_zone_are_utc(
    text: str, expected: str
) -> None:
    # Act
    when = parse_datetime(text)

    # Assert
    assert when.isoformat() == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("2026-11-24", "is not a date-time; use YYYY-MM-DDTHH:mm"),
        ("2026-11-24 10:00:00", "is not a date-time"),
        ("-1h", "is not a date-time"),
        ("1700000000", "is not a date-time"),
        ("now", "is not a date-time"),
        ("", "is not a date-time"),
        ("2026-11-24T10:00:00+08:00:00", "is not a date-time"),
        ("2026-13-01T00:00", "month must be in 1..12"),
        ("2026-02-30T00:00", "day is out of range for month"),
        ("2026-11-24T24:00", "hour must be in 0..23"),
        ("2026-11-24T10:00:60", "second must be in 0..59"),
        ("2026-11-24T10:00+24:00", "has no such zone offset"),
        ("2026-11-24T10:00+05:60", "has no such zone offset"),
        ("１９７０-01-01T00:00", "is not a date-time"),
        ("1969-12-31T23:59:59Z", "is outside 1970-01-01 to 9999-12-31 UTC"),
        ("1970-01-01T00:00+01:00", "is outside 1970-01-01 to 9999-12-31 UTC"),
        ("2026-11-24T10:00" + "0" * 80, "characters)"),
    ],
)  # fmt: skip
def test_other_datetimes_are_refused_in_one_line(text: str, says: str) -> None:
    # Act
    with pytest.raises(ValueError) as info:
        parse_datetime(text)

    # Assert
    assert says in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT1H", 3600), ("P1DT2H30M", 95400), ("PT90S", 90), ("PT0.5S", 0.5), ("P2W", 1209600),
        ("P1D", 86400), ("pt15m", 900), ("PT1,5H", 5400), ("-PT1H", 3600), ("PT0S", 0),
        ("1h", 3600), ("-1h", 3600), ("30m", 1800), ("-30m", 1800), ("2d", 172800),
        ("1h30m", 5400), ("500ms", 0.5), ("1w", 604800), ("1.5h", 5400), (" 10s ", 10),
    ],
)  # fmt: skip
def test_durations_iso_8601_and_short_go_back_from_now(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("+1h", "points into the future"),
        ("+PT1H", "points into the future"),
        ("P1Y", "years or months, which have no fixed length"),
        ("P2M", "years or months"),
        ("P1MT2H", "years or months"),
        ("P", "is not a duration"),
        ("PT", "is not a duration"),
        ("P1DT", "is not a duration"),
        ("PT1H2", "is not a duration"),
        ("1", "is not a duration"),
        ("1x", "is not a duration"),
        ("h", "is not a duration"),
        ("--1h", "is not a duration"),
        ("1h 30m", "is not a duration"),
        ("", "is not a duration"),
        ("１h", "is not a duration"),
        ("P" + "9" * 70 + "D", "is not a duration"),
        ("999999999999w", "reaches before 1970-01-01"),
    ],
)  # fmt: skip
def test_other_durations_are_refused_in_one_line(text: str, says: str) -> None:
    # Act
    with pytest.raises(ValueError) as info:
        parse_duration(text)

    # Assert
    assert says in str(info.value) and "\n" not in str(info.value)


def test_a_duration_before_now_is_that_long_before_it_in_utc() -> None:
    # Arrange
    now = arrow.get("2026-11-24T18:00:00+08:00")

    # Act
    when = before_now(parse_duration("P1DT2H30M"), "P1DT2H30M", now)

    # Assert
    assert when.isoformat() == "2026-11-23T07:30:00+00:00"


@pytest.mark.parametrize("text", ["P30000D", "9999999d"])
def test_a_duration_that_reaches_before_1970_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="reaches before 1970-01-01"):
        before_now(parse_duration(text), text, NOW)
