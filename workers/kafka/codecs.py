"""Record decoding: a Kafka record becomes the JSON dict alarm tasks receive, or a reason.

The dict (``Message``) holds only JSON types, so it crosses Celery with the json serializer:
``id`` (``cluster/topic/partition/offset``, unique), ``topic``, ``partition``, ``offset``,
``timestamp`` (ms), ``key``, ``headers`` and ``value``. Keys and header values are text when
they are valid UTF-8, otherwise ``{"base64": "..."}``; the ``base64`` codec gives everything
as base64 text. A record the codec refuses raises ``InvalidRecord`` with the reason.

With the optional package ``orjson`` installed, JSON values that it reads exactly as the
standard library does are read by it (about 3x faster); everything else, and every refusal
and its reason, goes through the standard library.

Decoding also refuses what a later step could not handle: JSON nested deeper than
``max_depth``, strings that are not Unicode (lone surrogates, from ``\\ud800`` escapes) and
integers outside the signed 64-bit range. So a message always encodes for the hand-off (orjson
stops at 255 levels), pickles for a pool process and hashes as UTF-8. ``decode_or_reason``
turns any exception at all into a reason: one record never fails a pull.
"""

from __future__ import annotations

import base64
import importlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from workers.exceptions import InvalidRecord

Codec = Literal["json", "text", "base64"]
Message = dict[str, Any]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"{text} is out of range")
    return number


INT64 = (-(2**63), 2**63 - 1)


class _Refused(ValueError):
    """A value the decoder must refuse with this very reason (not as 'not valid JSON')."""


def _bounded_int(text: str) -> int:
    # Refused before int() sees it: past 4,300 digits int() itself raises, with a long advice.
    digits = len(text.lstrip("-"))
    if digits > 19 and not INT64[0] <= int(text[:25]) <= INT64[1]:
        raise _Refused(f"value has an integer of {digits} digits, outside the signed 64-bit range")
    return int(text)


# Python's parser accepts NaN and Infinity, and turns 1e400 into inf; JSON has none of them,
# and a strict encoder refuses them later, far from the record that brought them.
_JSON_LOADS = json.JSONDecoder(
    parse_constant=_no_constant, parse_float=_finite, parse_int=_bounded_int
).decode


def _optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


# The optional fast JSON library (``orjson``), or None: everything works without it.
fast_json: Any = _optional("orjson")
# orjson reads an integer beyond 64 bits as a float, where the standard library keeps it an
# int: a value with a run of 19 or more digits goes the standard way (digits map to "0").
_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGITS = b"0" * 19


def _fast_object(value: bytes) -> dict[str, Any] | None:
    """The JSON object in ``value`` as orjson reads it, or None where the standard path must
    decide: no orjson, anything it refuses (invalid UTF-8 or JSON, NaN, Infinity, numbers that
    overflow, lone surrogates, a byte order mark: the standard path refuses them with its
    reason, or accepts them as before), JSON that is not an object, or long digit runs.
    For every other value both parsers give equal objects."""
    if fast_json is None:
        return None
    try:
        decoded = fast_json.loads(value)
    except ValueError:  # orjson.JSONDecodeError
        return None
    if type(decoded) is not dict or _LONG_DIGITS in value.translate(_DIGITS):
        return None
    return decoded


class Record(Protocol):
    """The attributes of kafka-python's ``ConsumerRecord`` that decoding reads."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class PlainRecord:
    """A ``Record`` as plain data: the in-memory log's records, and handed-off messages seen
    as records again (``workers.stages.letters.MessageRecord``)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def record_id(cluster: str, topic: str, partition: int, offset: int) -> str:
    """The unique id of a record: the same record always gets the same id."""
    return f"{cluster}/{topic}/{partition}/{offset}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64_or_none(data: bytes | None) -> str | None:
    return None if data is None else b64(data)


def _text_or_b64(data: bytes | None) -> str | dict[str, str] | None:
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": b64(data)}


DEFAULT_MAX_DEPTH = 64
MAX_DEPTH_LIMIT = 200  # below orjson's 255 levels, with room for the hand-off's envelope
# A JSON escape of a UTF-16 surrogate: the only way a lone surrogate gets into decoded text.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def inspect_json(value: Any, max_depth: int, strings: bool, integers: bool) -> str | None:
    """Why a decoded JSON value cannot travel on, or None. Iterative: any depth is safe.
    ``strings`` checks text for lone surrogates, ``integers`` the 64-bit range."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                return f"value nests deeper than {max_depth} levels"
            if isinstance(item, dict):
                if strings and any(_lone_surrogate(k) for k in item):
                    return "value has a key that is not valid Unicode (a lone surrogate escape)"
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)
        elif strings and isinstance(item, str) and _lone_surrogate(item):
            return "value has a string that is not valid Unicode (a lone surrogate escape)"
        elif integers and type(item) is int and not INT64[0] <= item <= INT64[1]:
            digits = len(str(abs(item)))
            return f"value has an integer of {digits} digits, outside the signed 64-bit range"
    return None


def _check(decoded: Any, raw: bytes, max_depth: int, long_digits: bool | None = None) -> None:
    """Refuse what later steps cannot handle; the raw bytes say which checks can be skipped
    (a typical event has neither many brackets, nor surrogate escapes, nor long digit runs).
    ``long_digits``: whether ``raw`` has a run of 19 digits, when the caller knows already."""
    deep = raw.count(b"{") + raw.count(b"[") > max_depth
    strings = b"\\u" in raw and _SURROGATE_ESCAPE.search(raw) is not None
    integers = _LONG_DIGITS in raw.translate(_DIGITS) if long_digits is None else long_digits
    if deep or strings or integers:
        reason = inspect_json(decoded, max_depth, strings, integers)
        if reason is not None:
            raise ValueError(reason)


def _decode_value(value: bytes, codec: Codec, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Raises ``ValueError`` with a short reason when the codec refuses the bytes."""
    if codec == "base64":
        return b64(value)
    if codec == "json":
        fast = _fast_object(value)
        if fast is not None:
            _check(fast, value, max_depth, long_digits=False)  # _fast_object looked
            return fast
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"value is not valid UTF-8 (byte {exc.start})") from None
    if codec == "text":
        return text
    if not text.strip():
        raise ValueError("value is empty; expected a JSON object")
    if text.startswith("\ufeff"):
        raise ValueError("value starts with a byte order mark; JSON text must not")
    try:
        decoded = _JSON_LOADS(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"value is not valid JSON ({exc.msg} at char {exc.pos})") from None
    except _Refused as exc:
        raise ValueError(str(exc)) from None
    except ValueError as exc:
        raise ValueError(f"value is not valid JSON ({exc})") from None
    except RecursionError:
        raise ValueError(f"value nests deeper than {max_depth} levels") from None
    if not isinstance(decoded, dict):
        raise ValueError(f"value is a JSON {_json_type(decoded)}; expected a JSON object")
    _check(decoded, value, max_depth)
    return decoded


def _json_type(value: Any) -> str:
    names = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def decode(
    record: Record,
    cluster: str,
    codec: Codec,
    max_value_bytes: int,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Message:
    """The message for ``record``; raises ``InvalidRecord`` if it cannot be one.

    Refused: no value (a tombstone), a value over ``max_value_bytes``, and whatever the codec
    refuses (``json``: not UTF-8, empty, not JSON, NaN or Infinity, JSON that is not an object,
    nested deeper than ``max_depth``, lone surrogates, integers outside 64 bits; ``text``: not
    UTF-8; ``base64`` accepts any bytes).
    """
    value = record.value
    try:
        if value is None:
            raise ValueError("record has no value (a tombstone)")
        if len(value) > max_value_bytes:
            raise ValueError(f"value is {len(value)} bytes; the limit is {max_value_bytes}")
        decoded = _decode_value(value, codec, max_depth)
    except ValueError as exc:
        raise InvalidRecord(record.topic, record.partition, record.offset, str(exc)) from None
    encode = _b64_or_none if codec == "base64" else _text_or_b64
    topic, partition, offset = record.topic, record.partition, record.offset
    headers = record.headers
    return {
        "id": f"{cluster}/{topic}/{partition}/{offset}",  # record_id(), inlined: a hot path
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp": record.timestamp,
        "key": encode(record.key),
        "headers": [[name, encode(data)] for name, data in headers] if headers else [],
        "value": decoded,
    }


def decode_or_reason(
    record: Record, cluster: str, codec: Codec, max_value_bytes: int, max_depth: int
) -> Message | str:
    """The message for ``record``, or why it cannot be one. Defence in depth: an exception
    ``decode`` did not foresee (a library bug, a value no check knew) is a reason too, with
    its type, so the record is dead-lettered instead of failing every pull of its partition."""
    try:
        return decode(record, cluster, codec, max_value_bytes, max_depth)
    except InvalidRecord as bad:
        return bad.reason
    except Exception as exc:  # noqa: BLE001 - see above; the caller logs the reason
        return f"cannot decode: {type(exc).__name__}: {exc}"
