"""Record decoding: a Kafka record becomes the JSON dict alarm tasks receive, or a reason.

The dict (``Message``) holds only JSON types, so it crosses Celery with the json serializer:
``id`` (``cluster/topic/partition/offset``, unique), ``topic``, ``partition``, ``offset``,
``timestamp`` (ms), ``key``, ``headers`` and ``value``. Keys and header values are text when
they are valid UTF-8, otherwise ``{"base64": "..."}``; the ``base64`` codec gives everything
as base64 text. A record the codec refuses raises ``InvalidRecord`` with the reason.

With the optional package ``orjson`` installed, JSON values that it reads exactly as the
standard library does are read by it (about 3x faster); everything else, and every refusal
and its reason, goes through the standard library.
"""

from __future__ import annotations

import base64
import importlib
import json
import math
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


# Python's parser accepts NaN and Infinity, and turns 1e400 into inf; JSON has none of them,
# and a strict encoder refuses them later, far from the record that brought them.
_JSON_LOADS = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite).decode


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
    as records again (``workers.alarms.stage.MessageRecord``)."""

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


def _decode_value(value: bytes, codec: Codec) -> Any:
    """Raises ``ValueError`` with a short reason when the codec refuses the bytes."""
    if codec == "base64":
        return b64(value)
    if codec == "json":
        fast = _fast_object(value)
        if fast is not None:
            return fast
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"value is not valid UTF-8 (byte {exc.start})") from None
    if codec == "text":
        return text
    if not text.strip():
        raise ValueError("value is empty; expected a JSON object")
    try:
        decoded = _JSON_LOADS(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"value is not valid JSON ({exc.msg} at char {exc.pos})") from None
    except ValueError as exc:
        raise ValueError(f"value is not valid JSON ({exc})") from None
    if not isinstance(decoded, dict):
        raise ValueError(f"value is a JSON {_json_type(decoded)}; expected a JSON object")
    return decoded


def _json_type(value: Any) -> str:
    names = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def decode(record: Record, cluster: str, codec: Codec, max_value_bytes: int) -> Message:
    """The message for ``record``; raises ``InvalidRecord`` if it cannot be one.

    Refused: no value (a tombstone), a value over ``max_value_bytes``, and whatever the codec
    refuses (``json``: not UTF-8, empty, not JSON, or JSON that is not an object; ``text``:
    not UTF-8; ``base64`` accepts any bytes).
    """
    value = record.value
    try:
        if value is None:
            raise ValueError("record has no value (a tombstone)")
        if len(value) > max_value_bytes:
            raise ValueError(f"value is {len(value)} bytes; the limit is {max_value_bytes}")
        decoded = _decode_value(value, codec)
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
