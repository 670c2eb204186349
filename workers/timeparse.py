"""Points in time as operators write them: ISO 8601, epoch seconds or milliseconds, ``-1h``."""

from __future__ import annotations

import re
from datetime import timedelta

import arrow

_RELATIVE = re.compile(r"^\s*([+-])\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Epoch numbers above this are milliseconds: 1e11 seconds is the year 5138.
_MS_THRESHOLD = 1e11


def parse_time(text: str | int | float, now: arrow.Arrow | None = None) -> arrow.Arrow:
    """Parse a point in time to UTC.

    Accepts ISO 8601 with or without a zone (no zone means UTC), ``now``, epoch seconds or
    milliseconds (as a number or digits), and relative forms such as ``-1h``, ``-30m``,
    ``+15s``, ``-2d``. Raises ``ValueError`` with the accepted forms when it cannot.
    """
    now = now or arrow.utcnow()
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a point in time")
    if isinstance(text, int | float):
        return _from_epoch(float(text))
    stripped = text.strip()
    if stripped.lower() == "now":
        return now.to("UTC")
    m = _RELATIVE.match(stripped)
    if m is not None:
        sign = -1 if m.group(1) == "-" else 1
        seconds = sign * float(m.group(2)) * _UNITS[m.group(3)]
        return now.to("UTC") + timedelta(seconds=seconds)
    if re.fullmatch(r"\d+(\.\d+)?", stripped):
        return _from_epoch(float(stripped))
    try:
        return arrow.get(stripped).to("UTC")
    except (arrow.parser.ParserError, ValueError, TypeError):
        raise ValueError(
            f"{text!r} is not a point in time; use ISO 8601 (2026-11-24T10:00+08:00), epoch "
            "seconds or milliseconds, 'now', or a relative form such as -1h, -30m, -2d"
        ) from None


def to_millis(when: arrow.Arrow) -> int:
    """Kafka timestamps are epoch milliseconds."""
    return int(when.float_timestamp * 1000)


def _from_epoch(value: float) -> arrow.Arrow:
    if value < 0:
        raise ValueError(f"{value!r} is before the epoch")
    seconds = value / 1000 if value >= _MS_THRESHOLD else value
    return arrow.get(seconds).to("UTC")
