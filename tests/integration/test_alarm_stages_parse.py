"""The parse stage (``workers.alarms.parse``) on the test Kafka: valid events go on to build,
every invalid one is dead-lettered with its exact reason and counted."""

from __future__ import annotations

import json
import math
import time
from typing import Any

from tests.integration.alarm_stages_support import Stages, good, message, read_all

SEVERITY = "is not one of 1 (fatal), 2 (warning), 3 (remind)"

INVALID: list[tuple[Any, str]] = [
    ([1, 2], "an event is a JSON object, got list"),
    ("plain text", "an event is a JSON object, got str"),
    ({**good("a", 1_700_000_000), "event_id": None}, "event_id is required"),
    ({**good("a", 1_700_000_000), "alert_name": " "}, "alert_name must not be empty"),
    ({**good("a", 1_700_000_000), "severity": True}, f"severity True {SEVERITY}"),
    ({**good("a", 1_700_000_000), "severity": "1"}, f"severity '1' {SEVERITY}"),
    (
        {**good("a", 1_700_000_000), "status": "FIRING"},
        "status 'FIRING' is not one of ['ABNORMAL', 'RECOVERED', 'CLOSED']",
    ),
    ({**good("a", "yesterday")}, "time 'yesterday' is not ISO 8601 or an epoch number"),
    ({**good("a", -3)}, "time -3 is not an epoch time"),
    ({**good("a", 1_700_000_000), "dimensions": ["h1"]}, "dimensions must be an object, got list"),
    (
        {**good("a", 1_700_000_000), "dimensions": {"port": 80}},
        "dimensions.port must be a string, got int",
    ),
    ({**good("a", 1_700_000_000), "target": 7}, "target must be a string, got int"),
    ({**good("a", 1_700_000_000), "bk_biz_id": "2"}, "bk_biz_id must be an integer, got str"),
    (
        {**good("a", 1_700_000_000), "dedupe_keys": []},
        "dedupe_keys must be a non-empty list of field names",
    ),
]


def test_parse_dead_letters_every_invalid_event_with_its_reason(stages: Stages) -> None:
    # Arrange: two good events around the bad ones, and one from too far in the future
    now = time.time()
    future = math.floor(now) + 3600
    values = [good("ok-1", now - 60), *(v for v, _ in INVALID), good("future", future)]
    values.append(good("ok-2", now - 30, host="h2"))
    messages = [message(stages, offset, value) for offset, value in enumerate(values)]

    # Act
    events = stages.run("parse", messages)
    letters = read_all(stages, stages.dead_letters)

    # Assert
    assert [(e["event_id"], e["record_id"], e["cluster"]) for e in events] == [
        ("ok-1", f"test/{stages.topic}/0/0", "test"),
        ("ok-2", f"test/{stages.topic}/0/{len(values) - 1}", "test"),
    ]
    headers = [dict(letter.headers) for letter in letters]
    reasons = [h["workers.reason"].decode() for h in headers]
    future_reasons = {
        f"invalid event: time {future} is {ahead} s in the future (limit 300 s)"
        for ahead in (3599, 3600)
    }
    assert reasons[:-1] == [f"invalid event: {reason}" for _, reason in INVALID]
    assert reasons[-1] in future_reasons
    assert [int(h["workers.offset"]) for h in headers] == list(range(1, len(values) - 1))
    assert {(h["workers.topic"], h["workers.cluster"], h["origin"]) for h in headers} == {
        (stages.topic.encode(), b"test", b"test")
    }
    assert [letter.key for letter in letters] == [f"k{n}".encode() for n in range(1, 16)]
    assert letters[0].value == b"[1, 2]"
    assert letters[1].value == b"plain text"
    assert json.loads(letters[2].value) == values[3]
    assert stages.store().stats() == {"invalid": 15}


def test_parse_of_only_valid_events_sends_and_counts_nothing(stages: Stages) -> None:
    # Arrange
    now = time.time()
    messages = [message(stages, n, good(f"e{n}", now - 10)) for n in range(3)]

    # Act
    events = stages.run("parse", messages)

    # Assert
    assert [e["event_id"] for e in events] == ["e0", "e1", "e2"]
    assert read_all(stages, stages.dead_letters) == []
    assert stages.store().stats() == {}
