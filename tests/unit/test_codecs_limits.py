"""What decoding refuses so that no later step can fail on a record: deep nesting, lone
surrogates, integers beyond 64 bits; and that whatever passes encodes, pickles and hashes."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest

from workers.exceptions import InvalidRecord
from workers.kafka import codecs
from workers.kafka.codecs import MAX_DEPTH_LIMIT, decode, decode_or_reason
from workers.pulling.handoff import json_body
from workers.testing import MemoryRecord

LIMIT = 10 << 20


def record(value: bytes) -> MemoryRecord:
    return MemoryRecord("alarms", 0, 7, 1_700_000_000_000, None, value, [])


def nested(depth: int, leaf: str = "1") -> bytes:
    """A JSON object ``depth`` levels deep (the top-level object is level 1)."""
    return ('{"a":' * (depth - 1) + "{" + f'"x":{leaf}' + "}" + "}" * (depth - 1)).encode()


def reason(value: bytes, max_depth: int = 64) -> str | None:
    try:
        decode(record(value), "c", "json", LIMIT, max_depth)
    except InvalidRecord as bad:
        return bad.reason
    return None


@pytest.fixture(params=["orjson", "standard"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every check holds on both decoding paths."""
    if request.param == "standard":
        monkeypatch.setattr(codecs, "fast_json", None)
    elif codecs.fast_json is None:
        pytest.skip("orjson is not installed")
    return str(request.param)


# -- nesting ------------------------------------------------------------------------------------


def test_nesting_up_to_the_limit_passes_and_one_more_level_is_refused(parser: str) -> None:
    assert reason(nested(64)) is None
    assert reason(nested(65)) == "value nests deeper than 64 levels"
    assert reason(b'{"a": [[[1]]]}', max_depth=3) == "value nests deeper than 3 levels"
    assert reason(b'{"a": [[1]]}', max_depth=3) is None


@pytest.mark.parametrize("depth", [500, 950, 1_000, 5_000, 100_000])
def test_any_depth_is_a_reason_never_a_recursion_error(parser: str, depth: int) -> None:
    assert reason(nested(depth)) == "value nests deeper than 64 levels"
    arrays = b'{"a":' + b"[" * depth + b"]" * depth + b"}"
    assert reason(arrays) == "value nests deeper than 64 levels"


def test_brackets_inside_strings_do_not_count_as_nesting(parser: str) -> None:
    value = json.dumps({"text": "[" * 500 + "{" * 500}).encode()

    assert reason(value) is None


# -- strings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b'{"a": "\\ud800"}', "string"),
        (b'{"a": "x\\uDFFFy"}', "string"),
        (b'{"a": ["ok", {"b": "\\udc00"}]}', "string"),
        (b'{"\\ud800": 1}', "key"),
        (b'{"a": {"\\udbff": 1}}', "key"),
        (b'{"a": "\\ud83d"}', "string"),  # half of a pair
        (b'{"a": "\\ude00\\ud83d"}', "string"),  # a pair in the wrong order
    ],
)
def test_lone_surrogates_are_refused_wherever_they_are(
    parser: str, value: bytes, expected: str
) -> None:
    assert reason(value) == (
        f"value has a {expected} that is not valid Unicode (a lone surrogate escape)"
    )


def test_a_surrogate_pair_escape_is_a_character_and_passes(parser: str) -> None:
    message = decode(record(b'{"a": "\\ud83d\\ude00", "b": "\\u00e9"}'), "c", "json", LIMIT)

    assert message["value"] == {"a": "\U0001f600", "b": "é"}


# -- numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "ok"),
    [
        ("9223372036854775807", True),
        ("-9223372036854775808", True),
        ("9223372036854775808", False),
        ("-9223372036854775809", False),
        ("18446744073709551615", False),
        ("1" * 5000, False),  # past Python's own limit of 4300 digits for int()
        ("1e308", True),
        ("12345678901234567890.5", True),  # a float: every JSON library reads it alike
    ],
)
def test_integers_beyond_64_bits_are_refused(parser: str, number: str, ok: bool) -> None:
    found = reason(f'{{"n": {number}}}'.encode())

    if ok:
        assert found is None
    else:
        assert found is not None and (
            "outside the signed 64-bit range" in found or "not valid JSON" in found
        ), found


# -- what passes can travel ---------------------------------------------------------------------


def test_a_message_at_the_deepest_allowed_nesting_encodes_pickles_and_hashes(parser: str) -> None:
    value = nested(MAX_DEPTH_LIMIT, '"\\ud83d\\ude00 \\u00e9"')
    message = decode(record(value), "c", "json", LIMIT, MAX_DEPTH_LIMIT)
    batch = [message]

    body: Any = json_body(((batch,), {}, {"chain": [[{"options": {}}]]}))
    assert json.loads(body)[0][0][0]["value"] == message["value"]
    assert pickle.loads(pickle.dumps((batch,), protocol=pickle.HIGHEST_PROTOCOL)) == (batch,)
    json.dumps(message, ensure_ascii=False).encode("utf-8")  # as the alarm stages hash it


def test_an_unforeseen_error_while_decoding_is_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("a parser bug\nwith a second line")

    monkeypatch.setattr(codecs, "_decode_value", broken)

    found = decode_or_reason(record(b"{}"), "c", "json", LIMIT, 64)

    assert found == "cannot decode: RuntimeError: a parser bug\nwith a second line"
