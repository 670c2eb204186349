"""Reason classes: the reasons the code writes get their class, and any text at all gets a word
of the fixed vocabulary (a label's values stay bounded)."""

from __future__ import annotations

import json
import random
import string

import pytest

from workers.alarms.events import InvalidEvent, parse_event
from workers.kafka.codecs import PlainRecord, decode_or_reason
from workers.metrics.reasons import REASONS, reason_class
from workers.pulling.handoff import unencodable
from workers.stages.base import failure_reason


def decoded(value: bytes | None, max_bytes: int = 1000, max_depth: int = 64) -> str:
    record = PlainRecord("events", 0, 7, 0, None, value)
    reason = decode_or_reason(record, "common", "json", max_bytes, max_depth)
    assert isinstance(reason, str), value
    return reason


def invalid_event(value: object) -> str:
    with pytest.raises(InvalidEvent) as bad:
        parse_event(value, 1_800_000_000_000, 300_000)
    return f"invalid event: {bad.value.reason}"  # as workers.alarms.parse words it


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (decoded(None), "tombstone"),
        (decoded(b"x" * 2000), "too_large"),
        (decoded(b"\xff\xfe{}"), "bad_unicode"),
        (decoded(b'{"a": "\\ud800"}'), "bad_unicode"),
        (decoded(b'{"\\ud800": 1}'), "bad_unicode"),
        (decoded(b'{"n": 123456789012345678901234567890}'), "integer_range"),
        (decoded(b"[" * 70 + b"]" * 70), "not_object"),
        (decoded(b'{"a":' * 70 + b"1" + b"}" * 70), "too_deep"),
        (decoded(b""), "not_json"),
        (decoded(b"\xef\xbb\xbf{}"), "not_json"),
        (decoded(b"{not json"), "not_json"),
        (decoded(b"NaN"), "not_json"),
        (decoded(b'{"x": 1e400}'), "not_json"),
        (decoded(b"[1, 2]"), "not_object"),
        (decoded(b'"text"'), "not_object"),
        ("cannot decode: RuntimeError: a bug", "codec"),
        (unencodable({"id": "c/t/0/1", "value": {1, 2}}) or "", "unencodable"),
        (
            "stage crashed: batch b1 started 3 times and never finished (its worker died or "
            "hit the hard time limit each time); this record alone is what remained",
            "crashed",
        ),
        (failure_reason("workers.alarms.build", ValueError("bad item")), "stage_error"),
        (invalid_event({"event_id": "x"}), "invalid_event"),
        (invalid_event([1]), "invalid_event"),
        ("my stage did not like it", "other"),
        ("", "other"),
    ],
)
def test_each_reason_the_code_writes_has_its_class(reason: str, expected: str) -> None:
    assert reason_class(reason) == expected


def test_any_text_at_all_gets_a_word_of_the_vocabulary() -> None:
    rng = random.Random(18)
    alphabet = string.printable + "\x00\u2028\ud800\U0001f600ß"
    prefixes = ["", "value is ", "value is 1", "stage ", "invalid event:", "cannot ", "record "]
    reasons: list[object] = [
        rng.choice(prefixes) + "".join(rng.choices(alphabet, k=rng.randint(0, 300)))
        for _ in range(500)
    ]
    reasons += [None, 17, b"value is 5 bytes", ["stage x failed"], json.dumps({"a": 1})]

    classes = {reason_class(reason) for reason in reasons}

    assert classes <= REASONS
    assert len(REASONS) <= 16  # small on purpose: one series per class and pipeline and stage
