"""The fingerprint's canonical JSON: written by orjson when it is installed, byte for byte what
the standard library writes (so no alert changes its fingerprint), and the standard library's
where orjson refuses the value."""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

import pytest

from workers.alarms import events
from workers.alarms.events import fingerprint

KEYS = ["alert_name", "bk_biz_id", "dimensions.host", "dimensions.zone", "strategy_id", "target"]


def standard(event: dict[str, Any], keys: list[str]) -> str:
    """The fingerprint as the standard library alone computes it (as before orjson)."""
    dims = event.get("dimensions") or {}
    parts = [
        [key, dims.get(key[11:]) if key.startswith("dimensions.") else event.get(key)]
        for key in keys
    ]
    canonical = json.dumps(parts, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return hashlib.sha1(canonical.encode()).hexdigest()


def every_code_point() -> list[str]:
    """Every code point but the surrogates, in strings of 512."""
    points = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
    return ["".join(points[i : i + 512]) for i in range(0, len(points), 512)]


@pytest.mark.parametrize(
    "event",
    [
        pytest.param({"alert_name": "cpu high", "dimensions": {"host": "h1"}}, id="plain"),
        pytest.param(
            {
                "alert_name": 'q"\\/\b\f\n\r\t\x00\x1f\x7f',
                "dimensions": {"host": "é 中 😀"},
                "target": "\u2028\u2029\ufeff",
            },
            id="escapes-and-non-ascii",
        ),
        pytest.param(
            {"alert_name": "a", "strategy_id": 2**63 - 1, "bk_biz_id": -(2**63)}, id="int64"
        ),
        pytest.param(
            {"alert_name": "a", "strategy_id": 2**64, "bk_biz_id": -(10**30)}, id="beyond-64-bits"
        ),
        pytest.param({"alert_name": "", "dimensions": {"host": ""}}, id="empty"),
    ],
)
def test_the_fingerprint_is_the_standard_librarys(event: dict[str, Any]) -> None:
    # Act
    found = fingerprint(event, KEYS)

    # Assert
    assert found == standard(event, KEYS)


def test_every_code_point_gives_the_standard_librarys_fingerprint() -> None:
    # Arrange
    chunks = every_code_point()

    # Act
    found = [fingerprint({"alert_name": text}, ["alert_name"]) for text in chunks]

    # Assert
    assert found == [standard({"alert_name": text}, ["alert_name"]) for text in chunks]


def test_without_orjson_the_fingerprint_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange
    event = {"alert_name": "cpu é", "dimensions": {"host": "h1"}, "strategy_id": 7}
    with_orjson = fingerprint(event, KEYS)
    monkeypatch.setattr(events, "fast_json", None)

    # Act
    without = fingerprint(event, KEYS)

    # Assert
    assert without == with_orjson == standard(event, KEYS)


def test_a_lone_surrogate_fails_to_encode_as_it_always_did() -> None:
    # Arrange
    event = {"alert_name": "bad \ud800"}

    # Act / Assert
    with pytest.raises(UnicodeEncodeError):
        fingerprint(event, ["alert_name"])
