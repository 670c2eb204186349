"""The ISO 8601 fast path of ``workers.alarms.events`` against the code it replaced: for every
string, the same milliseconds or the same refusal (and so the same dead-letter reason).

The old code was ``int(arrow.get(text).float_timestamp * 1000)``; ``datetime.fromisoformat``
now reads the common forms and arrow the rest. The standard library and arrow disagree on many
forms (separators, zones, fraction digits, other scripts' digits, week and ordinal dates): a
fixed corpus of them and a seeded fuzz of near-ISO strings are compared, old against new.
"""

from __future__ import annotations

import random
from typing import Any
from unittest import mock

import arrow
import pytest

from workers.alarms import events
from workers.alarms.events import InvalidEvent, event_time, iso_ms

NOW = 1_700_000_000_000  # 2023-11-14T22:13:20Z
MAX_FUTURE = 300_000
FUZZ_SEED = 20
FUZZ_EXAMPLES = 3000


def old_iso_ms(text: str) -> int:
    """The conversion before the fast path."""
    return int(arrow.get(text).float_timestamp * 1000)


def outcome(text: str, convert: Any) -> int | type[BaseException]:
    """The milliseconds, or the type of the exception raised."""
    try:
        return int(convert(text))
    except Exception as exc:  # noqa: BLE001 - the type is what is compared
        return type(exc)


def event_outcome(raw: str, now_ms: int, max_future_ms: int, old: bool) -> int | str:
    """``event_time``'s milliseconds or its refusal reason, with the old or the new conversion."""
    with mock.patch.object(events, "iso_ms", old_iso_ms if old else iso_ms):
        try:
            return event_time(raw, now_ms, max_future_ms)
        except InvalidEvent as bad:
            return bad.reason


def assert_same(text: str) -> None:
    assert outcome(text, iso_ms) == outcome(text, old_iso_ms), text
    for now_ms, ahead in ((NOW, MAX_FUTURE), (10**15, 0)):
        for raw in (text, f" {text}\n"):
            new = event_outcome(raw, now_ms, ahead, old=False)
            assert new == event_outcome(raw, now_ms, ahead, old=True), raw


CORPUS = [
    # The forms events carry.
    "2023-11-14T22:13:10Z",
    "2023-11-14T22:13:10.1Z",
    "2023-11-14T22:13:10.12Z",
    "2023-11-14T22:13:10.123Z",
    "2023-11-14T22:13:10.1234Z",
    "2023-11-14T22:13:10.12345Z",
    "2023-11-14T22:13:10.123456Z",
    "2023-11-14T22:13:10.999999Z",
    "2023-11-14T22:13:10.000001Z",
    "2023-11-15T06:13:10+08:00",
    "2023-11-15T06:13:10.123+08:00",
    "2023-11-14T16:43:10-05:30",
    "2023-11-14T22:13:10-00:00",
    "2023-11-14T22:13:10+00:00",
    "2023-11-14T22:13:10",
    "2023-11-14T22:13:10.123",
    "2023-11-14T22:13",
    "2023-11-14T22:13Z",
    "2023-11-14T22:13+08:00",
    "2023-11-14 22:13:10",
    "2023-11-14 22:13:10Z",
    "2023-11-14 22:13:10.5+08:00",
    "2023-11-14",
    "2024-02-29T12:00:00Z",
    "2000-01-01T00:00:00Z",
    "1999-12-31T23:59:59.999Z",
    "2000-01-01T08:00:00+08:00",
    "2000-01-01T07:59:59.999+08:00",
    # Forms only one of the two reads, or reads differently.
    "2023-11-14T22:13:10.1234567Z",
    "2023-11-14T22:13:10.9999995Z",
    "2023-11-14T22:13:10.9999994Z",
    "2023-11-14T22:13:10.123456789+08:00",
    "2023-11-14T22:13:10,5",
    "2023-11-14T22:13:10,123Z",
    "2023-11-14T22:13:10.Z",
    "2023-11-14T22:13:10.",
    "2023-11-14T22:13:10 +08:00",
    "2023-11-14T22:13:10 Z",
    "2023-11-14x22:13:10",
    "2023-11-14t22:13:10",
    "2023-11-14_22:13:10",
    "2023-11-14T22:13:10z",
    "2023-11-14T22:13:10+0800",
    "2023-11-14T22:13:10+08",
    "2023-11-14T22:13:10+08:00:30",
    "2023-11-14T22:13:10+08:00:30.5",
    "2023-11-14T22:13:10+05:99",
    "2023-11-14T22:13:10+23:59",
    "2023-11-14T22:13:10-23:59",
    "2023-11-14T22:13:10+24:00",
    "2023-11-14T22:13:10+99:00",
    "2023-11-14T22",
    "2023-11-14T22Z",
    "2023-11-14T2213",
    "2023-11-14T221310",
    "2023-11-14T221310.5Z",
    "20231114T221310Z",
    "20231114",
    "2023-W46-2",
    "2023-W46",
    "2023W462",
    "2023-W53-1",
    "2023-318",
    "2023318",
    "2023-366",
    "2024-366",
    "2023-11",
    "2023",
    "2023/11/14",
    "2023.11.14",
    "2023-1-4",
    "2023-11-4",
    "2023-11-14Z",
    "2023-11-14+08:00",
    "2023-11-14T",
    "2023-11-14 ",
    "2023-11-14  22:13:10",
    "2023-11-14T22:13:10ZZ",
    "2023-11-14T22:13:10+08:00[Asia/Shanghai]",
    "2023-11-14T22:13:10 Z",
    # Out of range, leap second, 24:00.
    "2023-11-14T24:00:00",
    "2023-11-14T24:00:00Z",
    "2023-11-14T24:00:01",
    "2023-11-14T24:00",
    "2023-11-14T23:59:60",
    "2023-11-14T23:59:60Z",
    "2016-12-31T23:59:60Z",
    "2023-11-14T23:60:00",
    "2023-11-14T25:00:00",
    "2023-02-29",
    "2023-02-29T00:00:00Z",
    "2023-04-31T00:00:00Z",
    "2023-13-01",
    "2023-00-10",
    "2023-11-00",
    "2023-11-32",
    # Huge and tiny years, the edges of datetime.
    "0000-01-01",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+23:59",
    "0001-01-01T00:00:00-23:59",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59.999999-23:59",
    "9999-12-31T23:59:59+23:59",
    "10000-01-01",
    "99999-01-01T00:00:00Z",
    "+2023-11-14",
    "+002023-11-14T22:13:10Z",
    "-2023-11-14",
    "1969-12-31T23:59:59.999Z",
    "1970-01-01T00:00:00Z",
    "5138-11-16T09:46:40Z",
    # Other scripts' digits (arrow reads some in dates; the standard library none).
    "٢٠٢٣-١١-١٤",
    "٢٠٢٣-١١-١٤T٢٢:١٣:١٠Z",
    "2023-11-14T٢٢:13:10Z",
    "２０２３-１１-１４T22:13:10Z",
    "२०२३-११-१४",
    "2023-11-14T22:13:10.١٢٣Z",
    "2023-11-14T22:13:10+٠٨:٠٠",
    "2023-11-14T22:13:1²",
    "²⁰²³-11-14",
    # Garbage.
    "",
    " ",
    "T",
    "Z",
    "now",
    "garbage",
    "nan",
    "inf",
    "1e12",
    "-5",
    "1699999990",
    "Tue, 14 Nov 2023 22:13:10 GMT",
    "2023-11-14\n22:13:10",
    "2023-11-14\t22:13:10",
    "2023-11-14T22:13:10\x00",
    "\x00",
    "2023-11-14T22:13:10." + "1" * 5000,
    "2023-11-14" + "T" * 5000,
    "9" * 5000,
    "2023-11-14T22:13:10Z" * 50,
]


@pytest.mark.parametrize("text", CORPUS)
def test_the_fast_path_reads_every_corpus_string_as_arrow_did(text: str) -> None:
    # Act / Assert
    assert_same(text)


def near_iso(rng: random.Random) -> str:
    """A string near the ISO forms events carry: mostly one of them, often slightly off."""

    def digits(n: int, top: int) -> str:
        return str(rng.randrange(top)).zfill(n)

    def pick(usual: str, *odd: str) -> str:
        """``usual`` nine times in ten, else one of ``odd``."""
        return usual if rng.random() < 0.9 else rng.choice(odd)

    year = pick(digits(4, 10_000) if rng.random() < 0.2 else str(rng.randrange(1998, 2040)),
                "0000", "0001", "9999", digits(5, 100_000), "+2023", "-2023", "202")  # fmt: skip
    month = pick(digits(2, 13), "00", "13", "1", digits(2, 100))
    day = pick(digits(2, 32), "00", "1", digits(2, 100))
    date_sep = pick("-", "/", ".", "", "_")
    text = year + date_sep + month + date_sep + day
    if rng.random() < 0.03:
        text = rng.choice(
            [f"{year}-W{digits(2, 60)}-{rng.randrange(10)}", f"{year}-{digits(3, 400)}"]
        )
    if rng.random() < 0.9:
        sep = pick(rng.choice("T T T  "), "t", "x", "", "  ", "\t")
        hour = pick(digits(2, 24), "24", "25", "99", "7")
        minute = pick(digits(2, 60), "60", "99", "5")
        time = hour + pick(":", "") + minute
        if rng.random() < 0.85:
            time += pick(":", "") + pick(digits(2, 60), "60", "61", "99", "5")
            if rng.random() < 0.6:
                n = int(pick(rng.choice("1233345666"), "0", "7", "9", "12"))
                time += pick(".", ",") + digits(n, 10**n)
        if rng.random() < 0.8:
            sign = rng.choice("+-")
            offset = f"{sign}{digits(2, 24)}:{digits(2, 60)}"
            time += pick(rng.choice(["Z", offset]), "z", f"{sign}{digits(2, 100)}:{digits(2, 100)}",
                         f"{sign}{digits(4, 2400)}", f"{sign}{digits(2, 24)}", f" {offset}",
                         f"{offset}:30", "-00:00")  # fmt: skip
        text += sep + time
    if rng.random() < 0.1:
        # One character changed, dropped or added, sometimes a digit of another script.
        at = rng.randrange(len(text) + 1)
        new = rng.choice("0123456789-:T Z.+٠١٢٣٤٥٦٧٨٩０９²")
        how = rng.randrange(3)
        text = text[:at] + ("" if how == 1 else new) + text[at + (how != 2) :]
    return text


def test_a_seeded_fuzz_of_near_iso_strings_reads_as_arrow_did() -> None:
    # Arrange
    rng = random.Random(FUZZ_SEED)
    texts = [near_iso(rng) for _ in range(FUZZ_EXAMPLES)]

    # Act / Assert
    for text in texts:
        assert_same(text)
    fast = sum(1 for text in texts if events._ISO_FAST(text) is not None)
    assert fast > FUZZ_EXAMPLES // 3  # the fast path itself was exercised, not only arrow


@pytest.mark.parametrize(
    "text",
    [
        "2023-11-14T22:13:10Z",
        "2023-11-14T22:13:10.123Z",
        "2023-11-14T22:13:10.123456Z",
        "2023-11-15T06:13:10+08:00",
        "2023-11-15T06:13:10.123-05:30",
        "2023-11-14T22:13:10",
        "2023-11-14 22:13:10",
        "2023-11-14",
    ],
)
def test_the_common_forms_never_reach_arrow(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange
    expected = old_iso_ms(text)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("arrow.get was called")

    monkeypatch.setattr(arrow, "get", refuse)

    # Act / Assert
    assert iso_ms(text) == expected


def test_a_time_without_a_zone_is_utc() -> None:
    # Act / Assert
    assert iso_ms("2023-11-14T22:13:10") == iso_ms("2023-11-14T22:13:10Z") == 1_699_999_990_000
