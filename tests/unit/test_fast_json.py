"""The optional orjson fast paths give exactly what the standard library gives: the same decoded
values and the same refusals (codecs), the same JSON values in a message body (hand-off)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from celery import Celery
from kombu.serialization import dumps as kombu_dumps
from kombu.serialization import loads as kombu_loads
from kombu.serialization import registry
from kombu.utils import json as kombu_json

from workers.config import PipelineConfig
from workers.exceptions import InvalidRecord
from workers.kafka import codecs
from workers.kafka.codecs import Codec, decode
from workers.pulling import handoff as pipeline
from workers.pulling.handoff import FAST_JSON, CeleryDispatcher, json_body
from workers.testing import MemoryRecord

needs_orjson = pytest.mark.skipif(codecs.fast_json is None, reason="orjson is not installed")

VALUES = [
    b'{"a": 1, "b": [1, 2.5, -0.0, 1e5, 1E-7, true, false, null], "c": {"d": "e"}}',
    '{"name": "température 40°", "emoji": "\U0001f525", "esc": "\\u00e9\\n\\t\\""}'.encode(),
    b'{"big": 123456789012345678901234567890}',  # orjson alone would make this a float
    b'{"neg": -9223372036854775809, "u64": 18446744073709551615}',
    b'{"i64": 9223372036854775807, "t": 1795485900123}',
    b'{"f": 0.1e-400, "g": 1.7976931348623157e308}',
    b'{"a": 1, "a": 2}',
    b'  {"padded": true}\n ',
    b'{"surrogate": "\\ud800"}',
    b'{"pair": "\\ud83d\\ude00"}',
    b'{"deep": [[[[[[[[[[{"x": 1}]]]]]]]]]]}',
    b"{}",
    # refused, each with the standard library's reason
    b'{"a": 1e400}',
    b'{"a": NaN}',
    b'{"a": Infinity}',
    b'{"a": -Infinity}',
    b"\xef\xbb\xbf{}",
    b'{"a": 1}\x00',
    b'{"a": 1,}',
    b"{'a': 1}",
    b'{"a": 01}',
    b'{"a": "tab\there"}',
    b'{"a": "\\x41"}',
    b"[1, 2]",
    b'"text"',
    b"42",
    b"null",
    b"",
    b"   ",
    b"\xff\xfe",
    b'{"a": "\xc3"}',
]


def outcome(value: bytes, codec: Codec = "json") -> Any:
    record = MemoryRecord("alarms", 1, 7, 1_700_000_000_000, b"k", value, [])
    try:
        return decode(record, "alert", codec, 1 << 20)
    except InvalidRecord as bad:
        return ("refused", bad.reason)


def same(a: Any, b: Any) -> bool:
    """Equal, with types (1 == 1.0 in Python, not in JSON), -0.0 and key order told apart."""
    return a == b and repr(a) == repr(b)


@needs_orjson
@pytest.mark.parametrize("value", VALUES)
def test_decoding_with_orjson_equals_decoding_without(
    value: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = outcome(value)
    monkeypatch.setattr(codecs, "fast_json", None)
    slow = outcome(value)

    assert same(fast, slow)


def test_without_orjson_json_values_are_decoded_by_the_standard_library(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(codecs, "fast_json", None)

    assert outcome(b'{"i64": 9223372036854775807}')["value"] == {"i64": 9223372036854775807}
    assert outcome(b'{"big": 123456789012345678901234567890}') == (
        "refused",
        "value has an integer of 30 digits, outside the signed 64-bit range",
    )
    assert outcome(b'{"a": NaN}') == ("refused", "value is not valid JSON (NaN is not JSON)")


def test_text_and_base64_codecs_do_not_parse() -> None:
    assert outcome(b'{"a": 1}', "text")["value"] == '{"a": 1}'
    assert outcome(b'{"a": 1}', "base64")["value"] == "eyJhIjogMX0="


def body(batch: list[dict[str, Any]]) -> tuple[Any, ...]:
    return ((batch,), {}, {"callbacks": None, "errbacks": None, "chain": [], "chord": None})


BATCH = [m for m in (outcome(v) for v in VALUES[:12]) if isinstance(m, dict)]


@needs_orjson
@pytest.mark.parametrize(
    "data",
    [
        body(BATCH),
        body([{"when": datetime.datetime(2026, 1, 2, 3, 4, 5)}]),  # kombu's own encoding
        body([{"raw": b"\xff"}]),
        body([{"big": 2**70}]),
        body([{"s": "\ud800"}]),
        body([{1: "non-string key"}]),
    ],
)
def test_message_body_decodes_to_what_kombus_encoder_gives(data: Any) -> None:
    fast = json_body(data)
    standard = kombu_json.dumps(data)

    assert same(kombu_json.loads(fast), kombu_json.loads(standard))


def test_fallback_is_kombus_own_encoding() -> None:
    data = body([{"when": datetime.datetime(2026, 1, 2, 3, 4, 5), "raw": b"x"}])

    assert json_body(data) == kombu_json.dumps(data)


@needs_orjson
def test_fast_serializer_has_jsons_content_type_and_leaves_decoding_alone() -> None:
    decoders = dict(registry._decoders)
    app = Celery("t", set_as_current=False)
    app.conf.update(broker_url="memory://", task_serializer="json")
    config = PipelineConfig(name="p", cluster="c", topic="t", group="g", tasks=("a.b",))

    dispatcher = CeleryDispatcher(app, config)

    assert dispatcher._publish["serializer"] == FAST_JSON
    content_type, encoding, payload = kombu_dumps(body(BATCH), serializer=FAST_JSON)
    assert (content_type, encoding) == ("application/json", "utf-8")
    assert registry.type_to_name["application/json"] == "json"
    assert registry._decoders == decoders
    decoded = kombu_loads(payload, content_type, encoding, accept={"application/json"})
    assert same(decoded, kombu_json.loads(kombu_json.dumps(body(BATCH))))


@pytest.mark.parametrize("serializer", ["json", "pickle"])
def test_no_fast_serializer_without_orjson_or_for_another_serializer(
    serializer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if serializer == "json":
        monkeypatch.setattr(pipeline, "fast_json", None)
    app = Celery("t", set_as_current=False)
    app.conf.update(broker_url="memory://", task_serializer=serializer)
    config = PipelineConfig(name="p", cluster="c", topic="t", group="g", tasks=("a.b",))

    assert "serializer" not in CeleryDispatcher(app, config)._publish
