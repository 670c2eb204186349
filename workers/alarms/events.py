"""Alarm events: the documented JSON schema, validated and normalised, with a fingerprint.

An *event* is one alarm observation; events with the same fingerprint build one *alert*.
``parse_event`` returns the normalised event or raises ``InvalidEvent`` with the exact reason.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import arrow

from workers.exceptions import WorkersError
from workers.kafka.codecs import fast_json

SEVERITIES = {1: "fatal", 2: "warning", 3: "remind"}
STATUSES = ("ABNORMAL", "RECOVERED", "CLOSED")
# Event fields a dedupe key may name (besides ``dimensions.<name>``).
KEY_FIELDS = ("alert_name", "target", "metric", "strategy_id", "bk_biz_id")
_TEXT = ("target", "description", "metric")
_INTS = ("strategy_id", "bk_biz_id")
_EPOCH = re.compile(r"[0-9]+(\.[0-9]+)?")
_MS_THRESHOLD = 1e11  # epoch numbers above this are milliseconds (1e11 s is the year 5138)
# Earlier than this is a clock that was never set (epoch 0), not an alarm: 2000-01-01T00:00Z.
EARLIEST_MS = 946_684_800_000
# The ISO 8601 forms events carry, read by ``datetime.fromisoformat`` (about 50 times faster
# than arrow): YYYY-MM-DD, optionally with 'T' or ' ' and HH:MM[:SS[.1-6 digits]] (hours
# 00-23: arrow reads 24:00 as the next day), optionally with 'Z' or ±HH:MM. In these forms the
# standard library and arrow read the same instant; every other string goes to arrow as before
# (the standard library also reads forms arrow refuses, such as any separator character, '.Z'
# or a space before the zone, and reads others differently: 7 or more fraction digits, which it
# cuts where arrow rounds; arrow also reads other scripts' digits). ASCII digits only.
_ISO_FAST = re.compile(
    r"\d{4}-\d\d-\d\d"
    r"(?:[T ](?:[01]\d|2[0-3]):\d\d(?::\d\d(?:\.\d{1,6})?)?(?:Z|[+-]\d\d:[0-5]\d)?)?",
    re.ASCII,
).fullmatch


class InvalidEvent(WorkersError):
    """An event that does not follow the schema; ``reason`` says exactly what is wrong."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _text(value: Mapping[str, Any], name: str, required: bool = False) -> str | None:
    item = value.get(name)
    if item is None:
        if required:
            raise InvalidEvent(f"{name} is required")
        return None
    if not isinstance(item, str):
        raise InvalidEvent(f"{name} must be a string, got {type(item).__name__}")
    if required and not item.strip():
        raise InvalidEvent(f"{name} must not be empty")
    return item


def _int(value: Mapping[str, Any], name: str) -> int | None:
    item = value.get(name)
    if item is None:
        return None
    if type(item) is not int:
        raise InvalidEvent(f"{name} must be an integer, got {type(item).__name__}")
    return item


def event_time(raw: Any, now_ms: int, max_future_ms: int) -> int:
    """Epoch milliseconds (UTC) from epoch seconds, epoch milliseconds or ISO 8601 (no zone
    means UTC). Raises ``InvalidEvent`` for anything else, for a time too far ahead, and for
    one before 2000 (a clock never set)."""
    if isinstance(raw, bool) or raw is None:
        raise InvalidEvent("time is required" if raw is None else "time must not be a boolean")
    given = raw
    if isinstance(raw, str) and _EPOCH.fullmatch(raw.strip()):
        raw = float(raw)  # epoch digits in a string
    if isinstance(raw, int | float):
        if not 0 <= raw < 1e15 or not math.isfinite(raw):  # also refuses 10**400 and NaN
            raise InvalidEvent(f"time {_short(given)} is not an epoch time")
        ms = int(raw if raw >= _MS_THRESHOLD else raw * 1000)
    elif isinstance(raw, str):
        try:
            ms = iso_ms(raw.strip())
        except (arrow.parser.ParserError, ValueError, TypeError):
            raise InvalidEvent(f"time {raw!r} is not ISO 8601 or an epoch number") from None
    else:
        kind = type(raw).__name__
        raise InvalidEvent(f"time must be a number or an ISO 8601 string, got {kind}")
    if ms < EARLIEST_MS:
        raise InvalidEvent(f"time {_short(given)} is before 2000-01-01: not a plausible alarm time")
    if ms > now_ms + max_future_ms:
        ahead = (ms - now_ms) / 1000
        raise InvalidEvent(
            f"time {_short(given)} is {ahead:.0f} s in the future (limit {max_future_ms // 1000} s)"
        )
    return ms


def iso_ms(text: str) -> int:
    """Epoch milliseconds of an ISO 8601 time (no zone means UTC), exactly as
    ``int(arrow.get(text).float_timestamp * 1000)``, which it falls back to; raises what that
    raises (``arrow.parser.ParserError``, ``ValueError``, ``TypeError``) for what it refuses."""
    if _ISO_FAST(text) is not None:
        try:
            # Python 3.10 reads no 'Z' (and fractions of 3 or 6 digits only: arrow reads others).
            when = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1] == "Z" else text)
        except ValueError:
            pass  # no such day or hour (02-30, 24:00, 23:59:60): arrow decides, as before
        else:
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            # The same float arithmetic as arrow's float_timestamp: the same millisecond.
            return int(when.timestamp() * 1000)
    return int(arrow.get(text).float_timestamp * 1000)


def _short(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 40 else text[:37] + "..."


def _dimensions(value: Mapping[str, Any]) -> dict[str, str]:
    dims = value.get("dimensions")
    if dims is None:
        return {}
    if not isinstance(dims, dict):
        raise InvalidEvent(f"dimensions must be an object, got {type(dims).__name__}")
    for name, item in dims.items():
        if not isinstance(item, str):
            raise InvalidEvent(f"dimensions.{name} must be a string, got {type(item).__name__}")
    return dict(dims)


def _dedupe_keys(value: Mapping[str, Any], dims: Mapping[str, str]) -> list[str]:
    keys = value.get("dedupe_keys")
    if keys is None:
        return ["alert_name", *(f"dimensions.{name}" for name in sorted(dims))]
    if not isinstance(keys, list) or not keys:
        raise InvalidEvent("dedupe_keys must be a non-empty list of field names")
    for key in keys:
        if not isinstance(key, str) or not (
            key in KEY_FIELDS or (key.startswith("dimensions.") and len(key) > 11)
        ):
            raise InvalidEvent(
                f"dedupe_keys entry {key!r} is not one of {list(KEY_FIELDS)} or 'dimensions.<name>'"
            )
    return sorted(set(keys))


def fingerprint(event: Mapping[str, Any], keys: list[str]) -> str:
    """The alert an event belongs to: a hash of the named fields' values (a dimension the
    event lacks counts as absent, so it still differs from an empty string)."""
    dims = event.get("dimensions") or {}
    parts = [
        [key, dims.get(key[11:]) if key.startswith("dimensions.") else event.get(key)]
        for key in keys
    ]
    return hashlib.sha1(_canonical(parts)).hexdigest()


def _canonical(parts: list[list[Any]]) -> bytes:
    """Compact, sorted, UTF-8 JSON of ``parts``: orjson writes exactly the standard library's
    bytes for them (strings, integers, null; checked for every code point), about 5 times
    faster; what it refuses (integers beyond 64 bits, lone surrogates) goes the standard way
    (and a lone surrogate fails to encode there, as it always did)."""
    if fast_json is not None:
        try:
            data: bytes = fast_json.dumps(parts, option=fast_json.OPT_SORT_KEYS)
            return data
        except TypeError:  # orjson.JSONEncodeError
            pass
    text = json.dumps(parts, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return text.encode()


def parse_event(value: Any, now_ms: int, max_future_ms: int) -> dict[str, Any]:
    """The normalised event for a record's JSON value; raises ``InvalidEvent``.

    Normalised: ``time`` in epoch milliseconds (UTC), ``status`` upper-case with default
    ``ABNORMAL``, ``dimensions`` a dict, ``dedupe_keys`` sorted, and ``fingerprint`` added.
    Unknown fields are dropped.
    """
    if not isinstance(value, dict):
        raise InvalidEvent(f"an event is a JSON object, got {type(value).__name__}")
    event_id = _text(value, "event_id", required=True)
    alert_name = _text(value, "alert_name", required=True)
    severity = value.get("severity")
    if severity is None:
        raise InvalidEvent("severity is required")
    if type(severity) is not int or severity not in SEVERITIES:
        raise InvalidEvent(
            f"severity {severity!r} is not one of 1 (fatal), 2 (warning), 3 (remind)"
        )
    status = value.get("status", "ABNORMAL")
    if not isinstance(status, str) or status.upper() not in STATUSES:
        raise InvalidEvent(f"status {status!r} is not one of {list(STATUSES)}")
    dims = _dimensions(value)
    event: dict[str, Any] = {
        "event_id": event_id,
        "alert_name": alert_name,
        "time": event_time(value.get("time"), now_ms, max_future_ms),
        "severity": severity,
        "status": status.upper(),
        "dimensions": dims,
    }
    for name in _TEXT:
        event[name] = _text(value, name)
    for name in _INTS:
        event[name] = _int(value, name)
    keys = _dedupe_keys(value, dims)
    event["dedupe_keys"] = keys
    event["fingerprint"] = fingerprint(event, keys)
    return event
