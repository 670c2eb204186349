"""The times of ``workers offsets reset``: date-times as kafka-consumer-groups' ``--to-datetime``
takes them, and durations back from now (``--by-duration``).

A date-time without a zone is UTC, as in kafka-consumer-groups and ``--to``. Both parsers refuse
anything else with a ``ValueError`` of one line that shows the accepted forms.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import arrow

from workers.config.timeparse import EARLIEST, LATEST

# Longer text is no date-time or duration anyone writes.
_MAX_TEXT = 64

_DATETIME = re.compile(
    r"(?P<y>[0-9]{4})-(?P<mo>[0-9]{2})-(?P<d>[0-9]{2})T(?P<h>[0-9]{2}):(?P<mi>[0-9]{2})"
    r"(?::(?P<s>[0-9]{2})(?:[.,](?P<f>[0-9]{1,9}))?)?"
    r"(?P<zone>Z|[+-](?P<zh>[0-9]{2})(?::?(?P<zm>[0-9]{2}))?)?",
    re.ASCII | re.IGNORECASE,
)
DATETIME_FORMS = (
    "use YYYY-MM-DDTHH:mm[:SS[.sss]] with an optional zone (Z, +08:00, +0800, +08; none "
    "means UTC), e.g. 2026-11-24T10:00:00.000+08:00"
)

_NUMBER = r"[0-9]{1,12}(?:[.,][0-9]{1,9})?"
_ISO = re.compile(
    rf"P(?:(?P<w>{_NUMBER})W)?(?:(?P<d>{_NUMBER})D)?"
    rf"(?:T(?:(?P<h>{_NUMBER})H)?(?:(?P<m>{_NUMBER})M)?(?:(?P<s>{_NUMBER})S)?)?",
    re.ASCII | re.IGNORECASE,
)
_SHORT_PART = re.compile(rf"({_NUMBER})(ms|s|m|h|d|w)", re.ASCII)
_SHORT = re.compile(rf"(?:{_NUMBER}(?:ms|s|m|h|d|w))+", re.ASCII)
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_ISO_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
DURATION_FORMS = (
    "use ISO 8601 (PT1H, P1DT2H30M, PT90S) or a short form (1h, -30m, 2d, 1h30m); "
    "either means that long before now"
)


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 80 else f"{text[:80]!r}… ({len(text)} characters)"


def parse_datetime(text: str) -> arrow.Arrow:
    """``YYYY-MM-DDTHH:mm[:SS[.fraction]][zone]`` as UTC; no zone means UTC. The time must
    fall between 1970-01-01 and 9999-12-31 UTC."""
    stripped = text.strip(" ")
    m = _DATETIME.fullmatch(stripped) if len(stripped) <= _MAX_TEXT else None
    if m is None:
        raise ValueError(f"{_shown(text)} is not a date-time; {DATETIME_FORMS}")
    zone = timezone.utc
    if m["zone"] and m["zone"].upper() != "Z":
        hours, minutes = int(m["zh"]), int(m["zm"] or 0)
        if hours > 23 or minutes > 59:
            raise ValueError(f"{_shown(text)} has no such zone offset; {DATETIME_FORMS}")
        sign = -1 if m["zone"].startswith("-") else 1
        zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
    micros = int((m["f"] or "0").ljust(6, "0")[:6])
    try:
        when = datetime(int(m["y"]), int(m["mo"]), int(m["d"]), int(m["h"]), int(m["mi"]),
                        int(m["s"] or 0), micros, zone)  # fmt: skip
    except ValueError as exc:  # month 13, February 30, hour 24, second 60
        raise ValueError(f"{_shown(text)} is not a date-time: {exc}") from None
    return _in_range(arrow.Arrow.fromdatetime(when).to("UTC"), text)


def parse_duration(text: str) -> timedelta:
    """A length of time back from now: ISO 8601 (``PT1H``, ``P1DT2H30M``, weeks, days, hours,
    minutes and seconds, with decimals) or the short form (``1h``, ``30m``, ``1h30m``; units
    ms, s, m, h, d, w). A leading ``-`` changes nothing (``-1h`` reads as "1 h back"); a ``+``
    is refused, as are years and months, which have no fixed length."""
    stripped = text.strip(" ")
    body = stripped[1:] if stripped.startswith("-") else stripped
    if len(stripped) > _MAX_TEXT or not body.isascii():
        raise ValueError(f"{_shown(text)} is not a duration; {DURATION_FORMS}")
    if body.startswith("+"):
        raise ValueError(
            f"{_shown(text)} points into the future; a duration goes back from now "
            "(PT1H, 1h and -1h all mean one hour ago)"
        )
    iso = _ISO.fullmatch(body)
    if iso is not None and body.upper() not in ("P", "PT") and not body.upper().endswith("T"):
        seconds = sum(_number(v) * _ISO_UNITS[k] for k, v in iso.groupdict().items() if v)
    elif _SHORT.fullmatch(body):
        seconds = sum(_number(n) * _UNITS[u] for n, u in _SHORT_PART.findall(body))
    elif re.fullmatch(r"P[^T]*[0-9][YM].*", body, re.IGNORECASE | re.ASCII):
        raise ValueError(
            f"{_shown(text)} counts years or months, which have no fixed length; "
            "use weeks or days (P30D)"
        )
    else:
        raise ValueError(f"{_shown(text)} is not a duration; {DURATION_FORMS}")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"{_shown(text)} reaches before 1970-01-01") from None


def before_now(duration: timedelta, text: str, now: arrow.Arrow | None = None) -> arrow.Arrow:
    """``now`` (default: the current time) minus ``duration``, in UTC; ``ValueError`` when
    that is before 1970 (``text``: the duration as written, for the message)."""
    try:
        when = (now or arrow.utcnow()).to("UTC") - duration
    except OverflowError:
        raise ValueError(f"{_shown(text)} reaches before 1970-01-01") from None
    if when < EARLIEST:
        raise ValueError(f"{_shown(text)} reaches before 1970-01-01")
    return when


def _number(text: str) -> float:
    return float(text.replace(",", "."))


def _in_range(when: arrow.Arrow, text: str) -> arrow.Arrow:
    if not EARLIEST <= when <= LATEST:
        raise ValueError(
            f"{_shown(text)} is outside 1970-01-01 to 9999-12-31 UTC (Kafka timestamps are "
            "epoch milliseconds, never negative)"
        )
    return when
