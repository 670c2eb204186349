"""Record decoding: the message each codec builds, and every refusal with its reason."""

from __future__ import annotations

import base64
import json

import pytest

from workers.exceptions import InvalidRecord
from workers.kafka.codecs import Codec, decode, record_id
from workers.testing import MemoryRecord

LIMIT = 1024


def record(
    value: bytes | None,
    *,
    key: bytes | None = b"host-1",
    headers: list[tuple[str, bytes]] | None = None,
    offset: int = 42,
) -> MemoryRecord:
    return MemoryRecord("alarms", 3, offset, 1_700_000_000_123, key, value, headers or [])


def refusal(value: bytes | None, codec: Codec, limit: int = LIMIT) -> InvalidRecord:
    with pytest.raises(InvalidRecord) as caught:
        decode(record(value), "alert", codec, limit)
    return caught.value


# -- messages -----------------------------------------------------------------------------------


def test_json_object_becomes_a_message_with_every_field() -> None:
    rec = record(
        b'{"severity": "major", "count": 2}',
        key=b"host-1",
        headers=[("trace", b"abc"), ("bin", b"\xff\xfe")],
    )

    message = decode(rec, "alert", "json", LIMIT)

    assert message == {
        "id": "alert/alarms/3/42",
        "topic": "alarms",
        "partition": 3,
        "offset": 42,
        "timestamp": 1_700_000_000_123,
        "key": "host-1",
        "headers": [["trace", "abc"], ["bin", {"base64": "//4="}]],
        "value": {"severity": "major", "count": 2},
    }
    assert json.loads(json.dumps(message)) == message


def test_key_that_is_not_utf8_is_given_as_base64() -> None:
    rec = record(b"{}", key=b"\xff\x00k")

    message = decode(rec, "alert", "json", LIMIT)

    assert message["key"] == {"base64": "/wBr"}
    assert json.loads(json.dumps(message)) == message


def test_record_without_key_or_headers() -> None:
    rec = record(b"{}", key=None, headers=None)

    message = decode(rec, "alert", "json", LIMIT)

    assert (message["key"], message["headers"], message["value"]) == (None, [], {})


def test_text_codec_gives_the_value_as_text() -> None:
    rec = record("température 40°".encode(), key=b"k", headers=[("h", b"v")])

    message = decode(rec, "alert", "text", LIMIT)

    assert (message["key"], message["headers"], message["value"]) == (
        "k",
        [["h", "v"]],
        "température 40°",
    )
    assert json.loads(json.dumps(message)) == message


def test_text_codec_accepts_an_empty_value() -> None:
    message = decode(record(b""), "alert", "text", LIMIT)

    assert message["value"] == ""


def test_base64_codec_encodes_key_headers_and_value() -> None:
    rec = record(b"\x00\xffbinary", key=b"host-1", headers=[("trace", b"abc")])

    message = decode(rec, "alert", "base64", LIMIT)

    assert (message["key"], message["headers"], message["value"]) == (
        "aG9zdC0x",
        [["trace", "YWJj"]],
        "AP9iaW5hcnk=",
    )
    assert json.loads(json.dumps(message)) == message


def test_base64_codec_keeps_a_missing_key_as_none() -> None:
    message = decode(record(b"x", key=None), "alert", "base64", LIMIT)

    assert message["key"] is None


@pytest.mark.parametrize("value", [b"", b"   ", b"\xff\xfe\x00", b"[1, 2]", b"null"])
def test_base64_codec_accepts_any_bytes(value: bytes) -> None:
    message = decode(record(value), "alert", "base64", LIMIT)

    assert message["value"] == base64.b64encode(value).decode()


def test_value_of_exactly_the_limit_is_accepted() -> None:
    value = b'{"p": "' + b"x" * (LIMIT - 9) + b'"}'

    message = decode(record(value), "alert", "json", LIMIT)

    assert len(value) == LIMIT
    assert message["value"] == {"p": "x" * (LIMIT - 9)}


def test_record_id_is_cluster_topic_partition_offset() -> None:
    assert record_id("common", "events", 0, 17) == "common/events/0/17"


# -- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["json", "text", "base64"])
def test_tombstone_is_refused_by_every_codec(codec: Codec) -> None:
    bad = refusal(None, codec)

    assert (bad.topic, bad.partition, bad.offset) == ("alarms", 3, 42)
    assert bad.reason == "record has no value (a tombstone)"
    assert str(bad) == "alarms[3]@42: record has no value (a tombstone)"


@pytest.mark.parametrize("codec", ["json", "text", "base64"])
def test_value_over_the_limit_is_refused_by_every_codec(codec: Codec) -> None:
    bad = refusal(b"x" * (LIMIT + 1), codec)

    assert bad.reason == f"value is {LIMIT + 1} bytes; the limit is {LIMIT}"


@pytest.mark.parametrize("codec", ["json", "text"])
def test_invalid_utf8_is_refused_with_the_byte_position(codec: Codec) -> None:
    bad = refusal(b'{"a": "\xff"}', codec)

    assert bad.reason == "value is not valid UTF-8 (byte 7)"


@pytest.mark.parametrize("value", [b"", b" \t\r\n "])
def test_empty_or_blank_value_is_refused_by_json(value: bytes) -> None:
    bad = refusal(value, "json")

    assert bad.reason == "value is empty; expected a JSON object"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{", "value is not valid JSON (Expecting property name enclosed in double quotes "
               "at char 1)"),
        (b"{}x", "value is not valid JSON (Extra data at char 2)"),
        (b"{'a': 1}", "value is not valid JSON (Expecting property name enclosed in double "
                      "quotes at char 1)"),
        (b"alarm", "value is not valid JSON (Expecting value at char 0)"),
    ],
)  # fmt: skip
def test_invalid_json_is_refused_with_the_parser_message(value: bytes, reason: str) -> None:
    bad = refusal(value, "json")

    assert bad.reason == reason


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (b"[1, 2]", "array"),
        (b'"major"', "string"),
        (b"42", "number"),
        (b"-1.5e3", "number"),
        (b"true", "boolean"),
        (b"false", "boolean"),
        (b"null", "null"),
    ],
)
def test_json_that_is_not_an_object_is_refused_naming_its_type(value: bytes, kind: str) -> None:
    bad = refusal(value, "json")

    assert bad.reason == f"value is a JSON {kind}; expected a JSON object"


@pytest.mark.parametrize(
    ("value", "constant"),
    [(b'{"v": NaN}', "NaN"), (b'{"v": Infinity}', "Infinity"), (b'{"v": -Infinity}', "-Infinity")],
)
def test_non_json_number_constants_are_refused(value: bytes, constant: str) -> None:
    with pytest.raises(InvalidRecord) as caught:
        decode(record(value), "alert", "json", LIMIT)

    assert caught.value.reason == f"value is not valid JSON ({constant} is not JSON)"


def test_json_string_spelling_a_constant_is_an_ordinary_string() -> None:
    message = decode(record(b'{"v": "NaN", "w": "Infinity"}'), "alert", "json", LIMIT)

    assert message["value"] == {"v": "NaN", "w": "Infinity"}


@pytest.mark.parametrize("value", [b'{"v": 1e400}', b'{"v": -1e400}'])
def test_numbers_that_overflow_to_infinity_are_refused(value: bytes) -> None:
    with pytest.raises(InvalidRecord) as caught:
        message = decode(record(value), "alert", "json", LIMIT)
        json.dumps(message, allow_nan=False)  # what a strict JSON consumer would need

    assert caught.value.reason.startswith("value is not valid JSON")
