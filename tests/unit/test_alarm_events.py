"""Unit tests of ``workers.alarms.events``: the event schema, times and fingerprints."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from workers.alarms.events import InvalidEvent, event_time, fingerprint, parse_event

NOW = 1_700_000_000_000  # 2023-11-14T22:13:20Z in epoch milliseconds
MAX_FUTURE = 300_000
SEVERITY = "is not one of 1 (fatal), 2 (warning), 3 (remind)"
STATUS = "is not one of ['ABNORMAL', 'RECOVERED', 'CLOSED']"
KEY_ENTRY = (
    "is not one of ['alert_name', 'target', 'metric', 'strategy_id', 'bk_biz_id'] "
    "or 'dimensions.<name>'"
)
_ABSENT = object()


def raw_event(**changes: Any) -> dict[str, Any]:
    """A valid raw event; a change to ``_ABSENT`` removes the field."""
    raw: dict[str, Any] = {
        "event_id": "e-1",
        "alert_name": "cpu high",
        "severity": 2,
        "time": 1_699_999_990,
        "dimensions": {"host": "h1", "dc": "eu"},
    }
    raw.update(changes)
    return {k: v for k, v in raw.items() if v is not _ABSENT}


def reason_of(value: Any) -> str:
    with pytest.raises(InvalidEvent) as bad:
        parse_event(value, NOW, MAX_FUTURE)
    return bad.value.reason


# -- the normalised event ------------------------------------------------------------------------


def test_a_full_event_is_normalised_and_unknown_fields_are_dropped() -> None:
    # Arrange
    raw = raw_event(
        status="recovered",
        target="10.0.0.1",
        description="load 9",
        metric="cpu.load",
        strategy_id=7,
        bk_biz_id=2,
        cluster="not-from-the-event",
        extra={"x": 1},
    )

    # Act
    event = parse_event(raw, NOW, MAX_FUTURE)

    # Assert
    assert event == {
        "event_id": "e-1",
        "alert_name": "cpu high",
        "time": 1_699_999_990_000,
        "severity": 2,
        "status": "RECOVERED",
        "dimensions": {"host": "h1", "dc": "eu"},
        "target": "10.0.0.1",
        "description": "load 9",
        "metric": "cpu.load",
        "strategy_id": 7,
        "bk_biz_id": 2,
        "dedupe_keys": ["alert_name", "dimensions.dc", "dimensions.host"],
        "fingerprint": fingerprint(event, ["alert_name", "dimensions.dc", "dimensions.host"]),
    }


def test_a_minimal_event_gets_defaults() -> None:
    # Arrange
    raw = raw_event(dimensions=_ABSENT)

    # Act
    event = parse_event(raw, NOW, MAX_FUTURE)

    # Assert
    assert event == {
        "event_id": "e-1",
        "alert_name": "cpu high",
        "time": 1_699_999_990_000,
        "severity": 2,
        "status": "ABNORMAL",
        "dimensions": {},
        "target": None,
        "description": None,
        "metric": None,
        "strategy_id": None,
        "bk_biz_id": None,
        "dedupe_keys": ["alert_name"],
        "fingerprint": hashlib.sha1(b'[["alert_name","cpu high"]]').hexdigest(),
    }


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(_ABSENT, "ABNORMAL", id="default"),
        pytest.param("abnormal", "ABNORMAL", id="lower"),
        pytest.param("Recovered", "RECOVERED", id="mixed"),
        pytest.param("CLOSED", "CLOSED", id="upper"),
    ],
)
def test_status_defaults_to_abnormal_and_ignores_case(status: Any, expected: str) -> None:
    # Act
    event = parse_event(raw_event(status=status), NOW, MAX_FUTURE)

    # Assert
    assert event["status"] == expected


# -- refused events: exact reasons ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param([], "an event is a JSON object, got list", id="list"),
        pytest.param("{}", "an event is a JSON object, got str", id="str"),
        pytest.param(None, "an event is a JSON object, got NoneType", id="none"),
        pytest.param(3, "an event is a JSON object, got int", id="int"),
    ],
)
def test_a_value_that_is_not_an_object_is_refused(value: Any, reason: str) -> None:
    # Act / Assert
    assert reason_of(value) == reason


@pytest.mark.parametrize(
    ("field", "reason"),
    [
        ("event_id", "event_id is required"),
        ("alert_name", "alert_name is required"),
        ("severity", "severity is required"),
        ("time", "time is required"),
    ],
)
@pytest.mark.parametrize("how", ["missing", "null"])
def test_every_required_field_missing_or_null(field: str, reason: str, how: str) -> None:
    # Arrange
    raw = raw_event(**{field: _ABSENT if how == "missing" else None})

    # Act / Assert
    assert reason_of(raw) == reason


@pytest.mark.parametrize("field", ["event_id", "alert_name"])
@pytest.mark.parametrize("blank", ["", "  \t"])
def test_required_text_must_not_be_blank(field: str, blank: str) -> None:
    # Act / Assert
    assert reason_of(raw_event(**{field: blank})) == f"{field} must not be empty"


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("event_id", 5, "event_id must be a string, got int"),
        ("alert_name", ["cpu"], "alert_name must be a string, got list"),
        ("target", 1, "target must be a string, got int"),
        ("description", {"a": 1}, "description must be a string, got dict"),
        ("metric", True, "metric must be a string, got bool"),
        ("strategy_id", True, "strategy_id must be an integer, got bool"),
        ("strategy_id", "7", "strategy_id must be an integer, got str"),
        ("strategy_id", 7.0, "strategy_id must be an integer, got float"),
        ("bk_biz_id", False, "bk_biz_id must be an integer, got bool"),
        ("bk_biz_id", [2], "bk_biz_id must be an integer, got list"),
        ("severity", True, f"severity True {SEVERITY}"),
        ("severity", 2.0, f"severity 2.0 {SEVERITY}"),
        ("severity", "2", f"severity '2' {SEVERITY}"),
        ("severity", 0, f"severity 0 {SEVERITY}"),
        ("severity", 4, f"severity 4 {SEVERITY}"),
        ("status", "OK", f"status 'OK' {STATUS}"),
        ("status", 1, f"status 1 {STATUS}"),
        ("status", None, f"status None {STATUS}"),
        ("dimensions", ["host"], "dimensions must be an object, got list"),
        ("dimensions", "host=h1", "dimensions must be an object, got str"),
        ("dimensions", {"host": "h1", "port": 80}, "dimensions.port must be a string, got int"),
        ("dimensions", {"up": True}, "dimensions.up must be a string, got bool"),
        ("dimensions", {"zone": None}, "dimensions.zone must be a string, got NoneType"),
        ("dimensions", {"tags": ["a"]}, "dimensions.tags must be a string, got list"),
        ("time", True, "time must not be a boolean"),
        ("time", [1_700_000_000], "time must be a number or an ISO 8601 string, got list"),
        ("time", {"s": 1}, "time must be a number or an ISO 8601 string, got dict"),
    ],
)
def test_a_field_of_the_wrong_type_is_refused(field: str, value: Any, reason: str) -> None:
    # Act / Assert
    assert reason_of(raw_event(**{field: value})) == reason


def test_the_first_problem_in_schema_order_is_reported() -> None:
    # Arrange: severity and time are both wrong; severity is checked first
    raw = raw_event(severity=9, time="soon")

    # Act / Assert
    assert reason_of(raw) == f"severity 9 {SEVERITY}"


# -- event time ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(1_699_999_990, 1_699_999_990_000, id="epoch-seconds"),
        pytest.param(1_699_999_990_123, 1_699_999_990_123, id="epoch-ms"),
        pytest.param(1_699_999_990.25, 1_699_999_990_250, id="float-seconds"),
        pytest.param(1_699_999_990.123, 1_699_999_990_123, id="float-seconds-ms"),
        pytest.param("1699999990", 1_699_999_990_000, id="digit-string"),
        pytest.param(" 1699999990.5 ", 1_699_999_990_500, id="decimal-string-spaces"),
        pytest.param("1699999990123", 1_699_999_990_123, id="digit-string-ms"),
        pytest.param("2023-11-14T22:13:10Z", 1_699_999_990_000, id="iso-z"),
        pytest.param("2023-11-14T22:13:10.123Z", 1_699_999_990_123, id="iso-z-ms"),
        pytest.param("2023-11-15T06:13:10+08:00", 1_699_999_990_000, id="iso-plus-8"),
        pytest.param("2023-11-14T22:13:10", 1_699_999_990_000, id="iso-no-zone-is-utc"),
        pytest.param("2023-11-14", 1_699_920_000_000, id="iso-date"),
        pytest.param(99_999_999_999, 99_999_999_999_000, id="below-ms-threshold-is-seconds"),
        pytest.param(946_684_800_000, 946_684_800_000, id="ms-2000-01-01-is-the-earliest"),
    ],
)
def test_event_time_forms(raw: Any, expected: int) -> None:
    # Act
    ms = event_time(raw, now_ms=10**15, max_future_ms=0)

    # Assert
    assert ms == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param("garbage", "time 'garbage' is not ISO 8601 or an epoch number", id="garbage"),
        pytest.param("", "time '' is not ISO 8601 or an epoch number", id="empty"),
        pytest.param("2023-13-45", "time '2023-13-45' is not ISO 8601 or an epoch number"),
        pytest.param("1e12", "time '1e12' is not ISO 8601 or an epoch number", id="exp-string"),
        pytest.param("-5", "time '-5' is not ISO 8601 or an epoch number", id="negative-string"),
        pytest.param("²", "time '²' is not ISO 8601 or an epoch number", id="superscript"),
        pytest.param(
            "١٧٠٠٠٠٠٠٠٠", "time '١٧٠٠٠٠٠٠٠٠' is not ISO 8601 or an epoch number", id="arabic-indic"
        ),
        pytest.param(
            "１７００００００００",
            "time '１７００００００００' is not ISO 8601 or an epoch number",
            id="fullwidth",
        ),
        pytest.param(
            "1699999990²", "time '1699999990²' is not ISO 8601 or an epoch number", id="digits-sup"
        ),
        pytest.param(-1, "time -1 is not an epoch time", id="negative"),
        pytest.param(0, "time 0 is before 2000-01-01: not a plausible alarm time", id="epoch-0"),
        pytest.param(-0.0, "time -0.0 is before 2000-01-01: not a plausible alarm time", id="-0"),
        pytest.param(
            100_000_000_000,  # read as milliseconds (1973), not seconds (5138)
            "time 100000000000 is before 2000-01-01: not a plausible alarm time",
            id="at-ms-threshold-is-ms",
        ),
        pytest.param(
            946_684_799,
            "time 946684799 is before 2000-01-01: not a plausible alarm time",
            id="a-second-before-2000",
        ),
        pytest.param(
            "0001-01-01T00:00:00Z",
            "time '0001-01-01T00:00:00Z' is before 2000-01-01: not a plausible alarm time",
            id="iso-year-1",
        ),
        pytest.param(-1.5, "time -1.5 is not an epoch time", id="negative-float-below-minus-1"),
        pytest.param(float("nan"), "time nan is not an epoch time", id="nan"),
        pytest.param(float("inf"), "time inf is not an epoch time", id="inf"),
        pytest.param(float("-inf"), "time -inf is not an epoch time", id="minus-inf"),
        pytest.param(10**15, "time 1000000000000000 is not an epoch time", id="1e15-int"),
        pytest.param(1e15, "time 1000000000000000.0 is not an epoch time", id="1e15-float"),
        pytest.param(10**400, f"time 1{'0' * 36}... is not an epoch time", id="huge-int-cut-to-40"),
        pytest.param(
            -(10**400), f"time -1{'0' * 35}... is not an epoch time", id="huge-negative-int"
        ),
    ],
)
def test_event_time_refuses(raw: Any, reason: str) -> None:
    # Act
    with pytest.raises(InvalidEvent) as bad:
        event_time(raw, NOW, MAX_FUTURE)

    # Assert
    assert bad.value.reason == reason


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(
            1_700_000_301, "time 1700000301 is 301 s in the future (limit 300 s)", id="seconds"
        ),
        pytest.param(
            1_700_000_900_000,
            "time 1700000900000 is 900 s in the future (limit 300 s)",
            id="ms",
        ),
        pytest.param(
            "2023-11-14T23:13:20Z",
            "time '2023-11-14T23:13:20Z' is 3600 s in the future (limit 300 s)",
            id="iso",
        ),
    ],
)
def test_a_time_too_far_in_the_future_is_refused(raw: Any, reason: str) -> None:
    # Act / Assert
    assert reason_of(raw_event(time=raw)) == reason


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(1_700_000_300, 1_700_000_300_000, id="at-the-limit"),
        pytest.param(1_700_000_299_999, 1_700_000_299_999, id="just-under"),
        pytest.param(1_700_000_000, 1_700_000_000_000, id="now"),
    ],
)
def test_a_time_within_max_future_is_accepted(raw: Any, expected: int) -> None:
    # Act
    event = parse_event(raw_event(time=raw), NOW, MAX_FUTURE)

    # Assert
    assert event["time"] == expected


def test_with_no_future_allowed_one_millisecond_ahead_is_refused() -> None:
    # Act
    with pytest.raises(InvalidEvent) as bad:
        event_time(NOW + 1, NOW, 0)

    # Assert
    assert event_time(NOW, NOW, 0) == NOW
    assert bad.value.reason == "time 1700000000001 is 0 s in the future (limit 0 s)"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(10**400, f"time 1{'0' * 36}... is not an epoch time", id="huge-int"),
        pytest.param(float("nan"), "time nan is not an epoch time", id="nan"),
        pytest.param("²", "time '²' is not ISO 8601 or an epoch number", id="superscript"),
        pytest.param(-3, "time -3 is not an epoch time", id="negative"),
    ],
)
def test_a_bad_time_is_refused_as_an_invalid_event_not_an_error(raw: Any, reason: str) -> None:
    # Act / Assert: InvalidEvent (the parse task dead-letters it), never another exception
    assert reason_of(raw_event(time=raw)) == reason


def test_a_reason_names_the_time_in_at_most_40_characters() -> None:
    # Act
    reason = reason_of(raw_event(time=10**400))

    # Assert
    shown = reason.removeprefix("time ").removesuffix(" is not an epoch time")
    assert len(shown) == 40
    assert shown.endswith("...")
    assert reason_of(raw_event(time=10**39)) == f"time 1{'0' * 39} is not an epoch time"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(10**15 - 1, 10**15 - 1, id="just-under-1e15-is-ms"),
    ],
)
def test_event_time_bounds_that_are_accepted(raw: Any, expected: int) -> None:
    # Act / Assert
    assert event_time(raw, now_ms=10**15, max_future_ms=0) == expected


@pytest.mark.parametrize("raw", [-0.5, -0.999, -0.001, -1e-300, -5e-324])
def test_a_negative_fraction_of_a_second_is_refused(raw: float) -> None:
    # Act
    with pytest.raises(InvalidEvent) as bad:
        event_time(raw, NOW, MAX_FUTURE)

    # Assert
    assert bad.value.reason == f"time {raw!r} is not an epoch time"


@pytest.mark.parametrize("raw", [-0.5, -0.999])
def test_a_negative_fraction_in_an_event_is_an_invalid_event(raw: float) -> None:
    # Act / Assert
    assert reason_of(raw_event(time=raw)) == f"time {raw!r} is not an epoch time"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(
            "1700000301",
            "time '1700000301' is 301 s in the future (limit 300 s)",
            id="digit-string-seconds",
        ),
        pytest.param(
            " 1700000900000 ",
            "time ' 1700000900000 ' is 900 s in the future (limit 300 s)",
            id="digit-string-ms-with-spaces",
        ),
        pytest.param(
            "1700000301.5",
            "time '1700000301.5' is 302 s in the future (limit 300 s)",
            id="decimal-string",
        ),
        pytest.param(
            1_700_000_301.5,
            "time 1700000301.5 is 302 s in the future (limit 300 s)",
            id="float",
        ),
        pytest.param(
            "1000000000000000",
            "time '1000000000000000' is not an epoch time",
            id="digit-string-1e15",
        ),
        pytest.param(
            "9" * 50,
            f"time '{'9' * 36}... is not an epoch time",
            id="long-digit-string-cut-to-40",
        ),
    ],
)
def test_a_reason_quotes_the_time_as_given(raw: Any, reason: str) -> None:
    # Act / Assert: a digit string is shown as the string, not as the number it was read as
    assert reason_of(raw_event(time=raw)) == reason


# -- dedupe keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dimensions", "expected"),
    [
        pytest.param(_ABSENT, ["alert_name"], id="no-dimensions"),
        pytest.param({}, ["alert_name"], id="empty"),
        pytest.param(
            {"z": "1", "a": "2", "m": ""},
            ["alert_name", "dimensions.a", "dimensions.m", "dimensions.z"],
            id="sorted",
        ),
    ],
)
def test_default_dedupe_keys_are_the_alert_name_and_every_dimension(
    dimensions: Any, expected: list[str]
) -> None:
    # Act
    event = parse_event(raw_event(dimensions=dimensions), NOW, MAX_FUTURE)

    # Assert
    assert event["dedupe_keys"] == expected


def test_explicit_dedupe_keys_are_sorted_and_deduplicated() -> None:
    # Arrange
    keys = ["target", "dimensions.host", "strategy_id", "alert_name", "target", "metric"]
    keys.append("bk_biz_id")

    # Act
    event = parse_event(raw_event(dedupe_keys=keys), NOW, MAX_FUTURE)

    # Assert
    assert event["dedupe_keys"] == [
        "alert_name", "bk_biz_id", "dimensions.host", "metric", "strategy_id", "target"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("keys", "reason"),
    [
        pytest.param([], "dedupe_keys must be a non-empty list of field names", id="empty"),
        pytest.param(
            "alert_name", "dedupe_keys must be a non-empty list of field names", id="string"
        ),
        pytest.param(
            {"alert_name": 1}, "dedupe_keys must be a non-empty list of field names", id="dict"
        ),
        pytest.param(["severity"], f"dedupe_keys entry 'severity' {KEY_ENTRY}", id="severity"),
        pytest.param(["event_id"], f"dedupe_keys entry 'event_id' {KEY_ENTRY}", id="event_id"),
        pytest.param(
            ["alert_name", "dimensions."],
            f"dedupe_keys entry 'dimensions.' {KEY_ENTRY}",
            id="dimension-without-name",
        ),
        pytest.param(["dimensions"], f"dedupe_keys entry 'dimensions' {KEY_ENTRY}", id="dims"),
        pytest.param([5], f"dedupe_keys entry 5 {KEY_ENTRY}", id="int"),
        pytest.param([None], f"dedupe_keys entry None {KEY_ENTRY}", id="none"),
    ],
)
def test_invalid_dedupe_keys_are_refused(keys: Any, reason: str) -> None:
    # Act / Assert
    assert reason_of(raw_event(dedupe_keys=keys)) == reason


# -- fingerprint ---------------------------------------------------------------------------------


def fp_of(**changes: Any) -> str:
    return str(parse_event(raw_event(**changes), NOW, MAX_FUTURE)["fingerprint"])


def test_the_fingerprint_is_a_hash_of_the_canonical_key_values() -> None:
    # Arrange
    canonical = b'[["alert_name","cpu high"],["dimensions.dc","eu"],["dimensions.host","h1"]]'

    # Act
    fp = fp_of()

    # Assert
    assert fp == hashlib.sha1(canonical).hexdigest()


def test_same_alert_name_and_dimensions_in_any_order_give_one_fingerprint() -> None:
    # Arrange
    first = {"event_id": "a", "severity": 1, "time": 1_699_999_000, "status": "ABNORMAL"}
    second = {"event_id": "b", "severity": 3, "time": 1_699_999_999, "status": "CLOSED"}

    # Act
    one = fp_of(dimensions={"host": "h1", "dc": "eu", "disk": "/"}, **first)
    other = fp_of(dimensions={"disk": "/", "dc": "eu", "host": "h1"}, **second)

    # Assert
    assert one == other


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"dimensions": {"host": "h2", "dc": "eu"}}, id="other-value"),
        pytest.param({"dimensions": {"host": "h1", "dc": "eu", "disk": "/"}}, id="extra-dim"),
        pytest.param({"dimensions": {"host": "h1"}}, id="fewer-dims"),
        pytest.param({"dimensions": {"HOST": "h1", "dc": "eu"}}, id="other-name"),
        pytest.param({"alert_name": "cpu low"}, id="other-alert-name"),
    ],
)
def test_different_dimensions_or_name_give_another_fingerprint(changes: dict[str, Any]) -> None:
    # Act
    other = fp_of(**changes)

    # Assert
    assert other != fp_of()


def test_a_missing_dimension_differs_from_an_empty_one() -> None:
    # Arrange
    keys = ["alert_name", "dimensions.mount"]

    # Act
    missing = fp_of(dimensions={}, dedupe_keys=keys)
    empty = fp_of(dimensions={"mount": ""}, dedupe_keys=keys)
    direct_missing = fingerprint({"alert_name": "a", "dimensions": {}}, keys)
    direct_empty = fingerprint({"alert_name": "a", "dimensions": {"mount": ""}}, keys)

    # Assert
    assert missing != empty
    assert direct_missing != direct_empty


def test_explicit_dedupe_keys_ignore_other_dimensions_and_fields() -> None:
    # Arrange
    keys = ["alert_name", "dimensions.host"]

    # Act
    one = fp_of(dimensions={"host": "h1", "pid": "1"}, dedupe_keys=keys, target="a")
    other = fp_of(dimensions={"host": "h1", "pid": "2"}, dedupe_keys=keys, target="b")
    third = fp_of(dimensions={"host": "h2", "pid": "1"}, dedupe_keys=keys, target="a")

    # Assert
    assert one == other
    assert third != one


def test_explicit_dedupe_keys_on_fields_use_their_values() -> None:
    # Arrange
    keys = ["strategy_id", "target"]

    # Act
    one = fp_of(strategy_id=7, target="t", alert_name="x", dedupe_keys=keys)
    same = fp_of(strategy_id=7, target="t", alert_name="y", dedupe_keys=keys)
    other = fp_of(strategy_id=8, target="t", alert_name="x", dedupe_keys=keys)
    unset = fp_of(target="t", dedupe_keys=keys)

    # Assert
    assert one == same
    assert len({one, other, unset}) == 3
    assert unset == hashlib.sha1(b'[["strategy_id",null],["target","t"]]').hexdigest()
