"""How the alert store talks JSON with its scripts (``workers.alarms.state``): arguments
encoded once, an ``APPLY`` reply read into ``Applied`` items, an alert read from the fields of
its hash."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from workers.kafka.codecs import fast_json

_INT_FIELDS = ("count", "severity", "first_time", "last_time", "last_change", "version")


def json_bytes(value: Any) -> bytes:
    """Compact JSON of ``value`` as UTF-8: orjson's when it is installed and takes the value,
    else the standard library's (integers beyond 64 bits, lone surrogates: never refused)."""
    if fast_json is not None:
        try:
            data: bytes = fast_json.dumps(value)
            return data
        except TypeError:  # orjson.JSONEncodeError
            pass
    return json.dumps(value, separators=(",", ":")).encode()


def _loads(raw: bytes) -> Any:
    """A script's JSON reply: orjson's reading, unless it refuses it (see ``read_elements``)."""
    if fast_json is not None:
        try:
            return fast_json.loads(raw)
        except ValueError:  # orjson.JSONDecodeError: lone surrogates, or no JSON at all
            pass
    return json.loads(raw)


@dataclass(frozen=True, slots=True)
class Applied:
    """What one event did: ``outcome`` (see ``state.OUTCOMES``) and the alert after it, if
    changed."""

    record_id: str
    outcome: str
    alert: dict[str, Any] | None
    change: str = ""  # the change the record made (also for a replayed record)
    # A quiet close whose publication failed, of the alert this event replaced: emit it first.
    unpublished_close: dict[str, Any] | None = None


def read_elements(reply: bytes) -> list[Any]:
    """The per-event elements of an ``APPLY`` reply. orjson reads an integer beyond 64 bits
    (which only the standard library's encoder could have written into an alert's meta) as a
    float, and no alert field is a float: then the standard library reads the reply again."""
    elements: list[Any] = _loads(reply)
    if fast_json is not None:
        for element in elements:
            for body in element[1:]:
                if type(body[1]) is dict and float in map(type, body[1].values()):
                    return list(json.loads(reply))
    return elements


def as_applied(record_id: str, element: list[Any]) -> Applied:
    """An ``APPLY`` reply element as ``Applied``; a replayed record's alert may come from a
    marker kept by an earlier version (the hash as HGETALL lists it)."""
    if len(element) == 1:
        return Applied(record_id, element[0], None)
    change, alert = element[1]
    close = _as_alert(element[2][1]) if len(element) > 2 else None
    return Applied(record_id, element[0], _as_alert(alert), change, close)


def _as_alert(body: dict[str, Any] | list[str]) -> dict[str, Any]:
    return body if isinstance(body, dict) else alert_of(body)


def alert_of(flat: Sequence[str]) -> dict[str, Any]:
    """An alert from its hash fields (as HGETALL lists them): ints typed, meta merged in."""
    fields = dict(zip(flat[::2], flat[1::2], strict=True))
    alert: dict[str, Any] = json.loads(fields.pop("meta", "{}"))
    alert.update(fields)
    alert.pop("close_published", None)
    for name in _INT_FIELDS:
        alert[name] = int(alert[name])
    alert.setdefault("closed_by", None)
    return alert


def text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
