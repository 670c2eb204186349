"""A corpus of hostile records for the alarm pipeline: each kind with the reason its dead
letter must name, and odd records that are valid and must take effect exactly once.

Every event here gets an alert name of its own, so each good one opens exactly one alert.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Header = tuple[str, bytes]


@dataclass(frozen=True)
class Kind:
    """One kind of record. ``reason`` is a part of the dead letter's ``workers.reason``, which
    starts with ``prefix``; None for an odd record that is valid (``alert`` is then the alert
    name it must open)."""

    name: str
    value: bytes | None
    reason: str | None
    prefix: str = ""
    key: bytes | None = None
    headers: list[Header] = field(default_factory=list)
    alert: str = ""


def event(name: str, now_s: int, **fields: Any) -> dict[str, Any]:
    """A valid event of its own alert, with ``fields`` changed (None removes a field)."""
    value: dict[str, Any] = {
        "event_id": f"id-{name}",
        "alert_name": f"alert-{name}",
        "time": now_s - 60,
        "severity": 2,
        "dimensions": {"host": "web-1"},
    }
    for k, v in fields.items():
        if v is None:
            value.pop(k, None)
        else:
            value[k] = v
    return value


def raw(value: Any) -> bytes:
    return json.dumps(value).encode()


def nested(depth: int) -> str:
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


def _decode_level(now_s: int) -> list[Kind]:
    ok = raw(event("x", now_s))[1:-1].decode()  # the fields of a valid event, to wrap
    lone = "lone surrogate"
    return [
        Kind("invalid-utf8", b"\xff\xfe{}", "not valid UTF-8"),
        Kind("truncated-utf8", b'{"a": "\xc3"}', "not valid UTF-8"),
        Kind("not-json", b"{not json", "not valid JSON"),
        Kind("array", b"[1, 2]", "value is a JSON array"),
        Kind("number", b"42", "value is a JSON number"),
        Kind("string", b'"text"', "value is a JSON string"),
        Kind("null", b"null", "value is a JSON null"),
        Kind("boolean", b"true", "value is a JSON boolean"),
        Kind("empty", b"", "value is empty"),
        Kind("whitespace", b"  \n\t ", "value is empty"),
        Kind("tombstone", None, "tombstone", key=b"tombstone-key"),
        Kind("nan", b'{"a": NaN}', "NaN is not JSON"),
        Kind("infinity", b'{"a": Infinity}', "Infinity is not JSON"),
        Kind("minus-infinity", b'{"a": -Infinity}', "-Infinity is not JSON"),
        Kind("float-overflow", b'{"a": 1e400}', "1e400 is out of range"),
        Kind("int-past-64-bits", b'{"a": 18446744073709551616}', "outside the signed 64-bit"),
        Kind("int-5000-digits", b'{"a": ' + b"7" * 5000 + b"}", "integer of 5000 digits"),
        Kind("nesting-65", nested(65).encode(), "nests deeper than 64 levels"),
        Kind("nesting-950", nested(950).encode(), "nests deeper than 64 levels"),
        Kind("nesting-2000", nested(2000).encode(), "nests deeper than 64 levels"),
        Kind(
            "arrays-100000",
            b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            "nests deeper than 64 levels",
        ),  # fmt: skip
        Kind("raw-nul", b'{"a": "x\x00y"}', "Invalid control character"),
        Kind("trailing-data", b'{"a": 1} x', "Extra data"),
        Kind("byte-order-mark", b"\xef\xbb\xbf{}", "byte order mark"),
        Kind("single-quotes", b"{'a': 1}", "not valid JSON"),
        Kind("trailing-comma", b'{"a": 1,}', "not valid JSON"),
        Kind("too-large", raw({"pad": "x" * 600_000}), "the limit is 524288"),
        Kind("over-1mb-string", raw({"pad": "y" * 1_200_000}), "the limit is 524288"),
        Kind("surrogate-event-id", f'{{{ok}, "event_id": "a\\ud800"}}'.encode(), lone),
        Kind("surrogate-alert-name", f'{{{ok}, "alert_name": "\\udc01"}}'.encode(), lone),
        Kind("surrogate-dimension", f'{{{ok}, "dimensions": {{"h": "\\ud800"}}}}'.encode(), lone),
        Kind("surrogate-dim-name", f'{{{ok}, "dimensions": {{"\\ud800": "x"}}}}'.encode(), lone),
        Kind("surrogate-status", f'{{{ok}, "status": "\\udfff"}}'.encode(), lone),
        Kind("surrogate-time", f'{{{ok}, "time": "\\ud800"}}'.encode(), lone),
        Kind("surrogate-dedupe", f'{{{ok}, "dedupe_keys": ["\\ud800"]}}'.encode(), lone),
        Kind("surrogate-unknown-field", f'{{{ok}, "note": "\\ud83d"}}'.encode(), lone),
        Kind("surrogate-half-pair", f'{{{ok}, "target": "x\\ud83d"}}'.encode(), lone),
    ]


def _event_level(now_s: int) -> list[Kind]:
    def bad(name: str, reason: str, **fields: Any) -> Kind:
        return Kind(name, raw(event(name, now_s, **fields)), reason, "invalid event: ")

    far_future = now_s + 86_400 * 365 * 900
    return [
        bad("missing-event-id", "event_id is required", event_id=None),
        bad("missing-alert-name", "alert_name is required", alert_name=None),
        bad("missing-time", "time is required", time=None),
        bad("missing-severity", "severity is required", severity=None),
        Kind(
            "null-event-id",
            raw({**event("n1", now_s), "event_id": None}),
            "event_id is required",
            "invalid event: ",
        ),  # fmt: skip
        Kind(
            "null-severity",
            raw({**event("n2", now_s), "severity": None}),
            "severity is required",
            "invalid event: ",
        ),  # fmt: skip
        Kind("empty-object", b"{}", "event_id is required", "invalid event: "),
        bad("event-id-number", "event_id must be a string, got int", event_id=7),
        bad("event-id-blank", "event_id must not be empty", event_id="   "),
        bad("alert-name-list", "alert_name must be a string, got list", alert_name=["a"]),
        bad("severity-string", "severity '2' is not one of", severity="2"),
        bad("severity-float", "severity 2.5 is not one of", severity=2.5),
        bad("severity-4", "severity 4 is not one of", severity=4),
        bad("severity-bool", "severity True is not one of", severity=True),
        bad("status-unknown", "status 'FOO' is not one of", status="FOO"),
        bad("status-number", "status 1 is not one of", status=1),
        bad("time-bool", "time must not be a boolean", time=True),
        bad("time-object", "time must be a number or an ISO 8601 string, got dict", time={}),
        bad("time-negative", "time -5 is not an epoch time", time=-5),
        bad("time-far-future", "in the future", time=far_future),
        bad("time-words", "time 'yesterday' is not ISO 8601", time="yesterday"),
        bad("time-bad-iso", "is not ISO 8601", time="2026-13-45T99:00"),
        bad("time-epoch-zero", "before 2000-01-01", time=1),
        bad("time-year-1", "before 2000-01-01", time="0001-01-01T00:00:00Z"),
        bad("time-empty", "time '' is not ISO 8601", time=""),
        bad("time-1e30", "is not an epoch time", time=1e30),
        bad("dimensions-list", "dimensions must be an object, got list", dimensions=["a"]),
        bad(
            "dimension-number", "dimensions.host must be a string, got int", dimensions={"host": 1}
        ),  # fmt: skip
        bad(
            "dimension-huge-array",
            "dimensions.tags must be a string, got list",
            dimensions={"tags": [0] * 100_000},
        ),  # fmt: skip
        bad(
            "dimension-object",
            "dimensions.host must be a string, got dict",
            dimensions={"host": {}},
        ),  # fmt: skip
        bad("dedupe-empty", "dedupe_keys must be a non-empty list", dedupe_keys=[]),
        bad("dedupe-unknown", "dedupe_keys entry 'nope' is not one of", dedupe_keys=["nope"]),
        bad("dedupe-not-list", "dedupe_keys must be a non-empty list", dedupe_keys="alert_name"),
        bad("strategy-id-string", "strategy_id must be an integer, got str", strategy_id="7"),
        bad("biz-id-float", "bk_biz_id must be an integer, got float", bk_biz_id=2.5),
        bad("target-number", "target must be a string, got int", target=5),
        bad("description-list", "description must be a string, got list", description=["x"]),
        bad("metric-object", "metric must be a string, got dict", metric={"m": 1}),
    ]


def _odd_but_valid(now_s: int) -> list[Kind]:
    def good(name: str, value: bytes, **extra: Any) -> Kind:
        return Kind(name, value, None, alert=f"alert-{name}", **extra)

    plain = raw(event("junk-key", now_s))
    dup = raw(event("duplicate-keys", now_s))[:-1] + b', "alert_name": "alert-duplicate-keys"}'
    decoy = dup.replace(b'"alert_name": "alert-duplicate-keys",', b'"alert_name": "decoy",', 1)
    return [
        good("junk-key", plain, key=b"\xff\x00\xfe"),
        good(
            "junk-headers",
            raw(event("junk-headers", now_s)),
            headers=[
                ("", b"\xff\xfe"),
                ("h" * 300, b"v" * 3000),
                *((f"n{i}", b"\x00") for i in range(50)),
            ],
        ),  # fmt: skip
        good("duplicate-keys", decoy),  # the last value wins, in both JSON parsers
        good("escaped-nul", raw(event("escaped-nul", now_s, description="a\u0000b"))),
        good("emoji-pair", raw(event("emoji-pair", now_s, target="\U0001f525"))),
        good("unknown-fields", raw(event("unknown-fields", now_s, extra={"x": [1, 2]}))),
        good("nesting-64", raw(event("nesting-64", now_s, deep=json.loads(nested(62))))),
        good("int64-max", raw(event("int64-max", now_s, strategy_id=2**63 - 1))),
    ]


CORPUS: list[Callable[[int], list[Kind]]] = [_decode_level, _event_level, _odd_but_valid]


def corpus(now_s: int) -> list[Kind]:
    """Every kind, in a fixed order."""
    return [kind for part in CORPUS for kind in part(now_s)]
