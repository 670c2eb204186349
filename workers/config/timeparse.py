"""Points in time as operators write them: ISO 8601, epoch seconds or milliseconds, ``-1h``.

Every accepted time lies between 1970-01-01 and 9999-12-31 UTC (Kafka timestamps are epoch
milliseconds, never negative); anything else raises ``ValueError`` in one line.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

import arrow

# ASCII digits only: \d and float() also take other scripts' digits.
_RELATIVE = re.compile(r"([+-])\s*([0-9]{1,16}(?:\.[0-9]{1,9})?)\s*(ms|s|m|h|d|w)", re.ASCII)
_EPOCH = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Epoch numbers above this are milliseconds: 1e11 seconds is the year 5138.
_MS_THRESHOLD = 1e11
# Longer text is no time anyone writes (ISO 8601 with a zone and nanoseconds is 35).
_MAX_TEXT = 64
EARLIEST = arrow.Arrow(1970, 1, 1, tzinfo="UTC")
LATEST = arrow.Arrow(9999, 12, 31, 23, 59, 59, tzinfo="UTC")
_FORMS = (
    "use ISO 8601 (2026-11-24T10:00+08:00), epoch seconds or milliseconds, 'now', or a "
    "relative form such as -1h, -30m, -2d"
)


def parse_time(text: str | int | float, now: arrow.Arrow | None = None) -> arrow.Arrow:
    """Parse a point in time to UTC.

    Accepts ISO 8601 with or without a zone (no zone means UTC), ``now``, epoch seconds or
    milliseconds (as a number or digits), and relative forms such as ``-1h``, ``-30m``,
    ``+15s``, ``-2d``. Raises ``ValueError`` with the accepted forms when it cannot, and when
    the time falls outside 1970-9999.
    """
    now = now or arrow.utcnow()
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a point in time")
    if isinstance(text, int | float):
        return _from_epoch(text, _shown(text))
    shown = _shown(text)
    stripped = text.strip(" ")
    # Printable ASCII only: a line break or another script's digits is never meant.
    if len(stripped) > _MAX_TEXT or not stripped.isascii() or not stripped.isprintable():
        raise ValueError(f"{shown} is not a point in time; {_FORMS}")
    if stripped.lower() == "now":
        return now.to("UTC")
    m = _RELATIVE.fullmatch(stripped)
    if m is not None:
        sign = -1 if m.group(1) == "-" else 1
        seconds = sign * float(m.group(2)) * _UNITS[m.group(3)]
        try:
            # timedelta and datetime raise OverflowError beyond their ranges (about 2.7
            # million years, and the year 9999): out of range either way.
            return _in_range(now.to("UTC") + timedelta(seconds=seconds), shown)
        except OverflowError:
            raise ValueError(_out_of_range(shown, seconds < 0)) from None
    if _EPOCH.fullmatch(stripped):
        return _from_epoch(float(stripped), shown)
    try:
        when = arrow.get(stripped).to("UTC")
    except Exception:  # noqa: BLE001 - arrow raises assorted types for odd input
        raise ValueError(f"{shown} is not a point in time; {_FORMS}") from None
    return _in_range(when, shown)


def to_millis(when: arrow.Arrow) -> int:
    """Kafka timestamps are epoch milliseconds."""
    return int(when.float_timestamp * 1000)


def _from_epoch(value: float, shown: str) -> arrow.Arrow:
    if isinstance(value, float) and math.isnan(value):
        raise ValueError(f"{shown} is not a point in time; {_FORMS}")
    # Ints of any size compare exactly, never overflowing.
    if not 0 <= value <= LATEST.timestamp() * 1000:
        raise ValueError(_out_of_range(shown, value < 0))
    seconds = value / 1000 if value >= _MS_THRESHOLD else value
    return arrow.get(float(seconds)).to("UTC")


def _in_range(when: arrow.Arrow, shown: str) -> arrow.Arrow:
    if not EARLIEST <= when <= LATEST:
        raise ValueError(_out_of_range(shown, when < EARLIEST))
    return when


def _out_of_range(shown: str, early: bool) -> str:
    where = "before the epoch (1970-01-01)" if early else "after 9999-12-31"
    return f"{shown} is {where}: times must fall between 1970-01-01 and 9999-12-31 UTC"


def _shown(value: str | int | float) -> str:
    """The value as an error shows it: its repr, cut at 80 characters."""
    if isinstance(value, int) and value.bit_length() > 256:
        return "a number of more than 77 digits"
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:80]}… ({len(text)} characters)"
