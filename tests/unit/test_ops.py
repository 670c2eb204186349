"""Unit tests of the operator command's pure parts: rendering, keys and clusters of produced
records, the topics a configuration needs, the demo's event stream and its settle rule."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from workers.config import Settings, load_settings
from workers.demo import events
from workers.demo.events import EventStream
from workers.demo.progress import Snapshot
from workers.ops.context import OpsError
from workers.ops.dlq import Letter, reason_counts
from workers.ops.fmt import age, table
from workers.ops.produce import default_cluster, key_of
from workers.ops.topics import NeededTopic, needed_topics

PUBLISH = "workers.alarms.publish"


def settings(pipelines: dict[str, Any], clusters: tuple[str, ...] = ("common",),
             **top: Any) -> Settings:  # fmt: skip
    conf = {
        "workers_kafka_clusters": {c: {"bootstrap_servers": ["127.0.0.1:9092"]} for c in clusters},
        "workers_pipelines": pipelines,
        **top,
    }
    return load_settings(conf, environ={})


def pipe(topic: str, cluster: str = "common", tasks: tuple[str, ...] = ("t.parse",),
         **extra: Any) -> dict[str, Any]:  # fmt: skip
    return {"cluster": cluster, "topic": topic, "tasks": list(tasks), **extra}


# -- fmt ---------------------------------------------------------------------------------------


def test_table_right_aligns_numeric_columns_and_left_aligns_text() -> None:
    text = table(["n", "name", "mixed"], [[1, "x", None], [1234567, "longer", 1234.56],
                                          [None, None, "z"]])  # fmt: skip

    assert text.splitlines() == [
        "        n  name    mixed",
        "        1  x       -",
        "1,234,567  longer  1,234.6",
        "        -  -       z",
    ]


def test_table_renders_booleans_as_yes_no_and_strips_trailing_spaces() -> None:
    text = table(["flag", "note"], [[True, ""], [False, "x"]])

    assert text.splitlines() == ["flag  note", "yes", "no    x"]  # text: left-aligned


def test_table_right_aligns_numbers_with_unknowns_but_not_an_empty_column() -> None:
    text = table(["n", "holder"], [[5, None], [None, None], [120, None]])

    assert text.splitlines() == ["  n  holder", "  5  -", "  -  -", "120  -"]


def test_table_without_rows_is_the_header_line() -> None:
    assert table(["partition", "lag"], []) == "partition  lag"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (-5, "0s"), (0, "0s"), (4.9, "4s"), (59, "59s"), (60, "1m00s"),
     (192, "3m12s"), (3599, "59m59s"), (3600, "1h00m"), (7500, "2h05m"),
     (86_399, "23h59m"), (86_400, "1d00h"), (273_600, "3d04h")],
)  # fmt: skip
def test_age_uses_the_two_largest_units(seconds: float | None, text: str) -> None:
    assert age(seconds) == text


# -- produce -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "path", "key"),
    [
        ({"id": "a-1"}, "id", b"a-1"),
        ({"alert": {"host": {"name": "web-1"}}}, "alert.host.name", b"web-1"),
        ({"n": 42}, "n", b"42"),
        ({"n": 1.5}, "n", b"1.5"),
        ({"flag": True}, "flag", b"true"),
        ({"s": "ü"}, "s", "ü".encode()),
        ({"id": ""}, "id", b""),
    ],
)
def test_key_of_takes_the_value_at_a_dotted_path(value: Any, path: str, key: bytes) -> None:
    assert key_of(value, path) == key


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"id": "x"}, "missing"),
        ({"a": "text"}, "a.b"),
        ({"a": [1, 2]}, "a.0"),
        ({"a": {"b": None}}, "a.b"),
        ({"a": {"b": 1}}, "a"),
        ({"a": [1]}, "a"),
        (["id"], "id"),
        (None, "id"),
        ("plain", "id"),
    ],
)
def test_key_of_is_none_without_a_scalar_at_the_path(value: Any, path: str) -> None:
    assert key_of(value, path) is None


def test_default_cluster_is_the_cluster_of_the_pipeline_reading_the_topic() -> None:
    s = settings({"p": pipe("events", cluster="alert")}, clusters=("common", "alert"))

    assert default_cluster(s, "events") == "alert"


def test_default_cluster_is_the_only_cluster_when_no_pipeline_reads_the_topic() -> None:
    assert default_cluster(settings({}, clusters=("solo",)), "anything") == "solo"


def test_default_cluster_asks_for_cluster_when_it_cannot_tell() -> None:
    s = settings({"a": pipe("t", cluster="common"), "b": pipe("t", cluster="alert")},
                 clusters=("common", "alert"))  # fmt: skip

    with pytest.raises(OpsError, match=r"pass --cluster \(one of \['alert', 'common'\]\)"):
        default_cluster(s, "t")
    with pytest.raises(OpsError, match="'unread'"):
        default_cluster(s, "unread")


# -- topics ------------------------------------------------------------------------------------


def test_needed_topics_are_each_pipelines_topic_and_dead_letter_topic() -> None:
    s = settings({"a": pipe("in-a"), "b": pipe("in-b", dead_letter_topic="b-dead")})

    assert needed_topics(s) == [
        NeededTopic("common", "in-a", "pipeline a reads it"),
        NeededTopic("common", "in-a.dlq", "dead letters of a"),
        NeededTopic("common", "in-b", "pipeline b reads it"),
        NeededTopic("common", "b-dead", "dead letters of b"),
    ]


def test_the_alarm_output_topic_is_needed_only_by_pipelines_that_publish() -> None:
    s = settings(
        {"quiet": pipe("q"), "loud": pipe("l", cluster="alert", tasks=("t.parse", PUBLISH))},
        clusters=("common", "alert"), workers_alarm_output_topic="out",
    )  # fmt: skip

    found = {(n.cluster, n.topic): n.why for n in needed_topics(s)}

    assert found[("alert", "out")] == "alert changes of loud"
    assert [t for c, t in found if t == "out"] == ["out"]


def test_the_alarm_output_cluster_setting_moves_the_output_topic() -> None:
    s = settings({"p": pipe("in", tasks=(PUBLISH,))}, clusters=("common", "alert"),
                 workers_alarm_output_cluster="alert")  # fmt: skip

    assert NeededTopic("alert", "alerts", "alert changes of p") in needed_topics(s)


def test_needed_topics_list_each_topic_once_with_every_reason() -> None:
    s = settings({"a": pipe("shared", tasks=(PUBLISH,), group="ga"),
                  "b": pipe("shared", tasks=(PUBLISH,), group="gb")})  # fmt: skip

    found = needed_topics(s)

    assert [(n.cluster, n.topic) for n in found] == [
        ("common", "shared"), ("common", "shared.dlq"), ("common", "alerts"),
    ]  # fmt: skip
    assert found[0].why == "pipeline a reads it; pipeline b reads it"
    assert found[2].why == "alert changes of a; alert changes of b"


# -- dlq show's reason groups --------------------------------------------------------------------


def letter_with(reason: str) -> Letter:
    return Letter(0, 0, 0, reason, "c/t/0/0", None, b"x", (), None)


def test_reasons_are_counted_as_written_numbers_and_values_kept() -> None:
    # Arrange
    reasons = ["value is not valid JSON (Expecting value at char 17)",
               "field 'severity' must be 1-5, got 7",
               "value is not valid JSON (Expecting value at char 17)",
               "value is not valid JSON (Expecting value at char 3)"]  # fmt: skip

    # Act
    counts = reason_counts([letter_with(r) for r in reasons])

    # Assert
    assert counts == [("value is not valid JSON (Expecting value at char 17)", 2),
                      ("field 'severity' must be 1-5, got 7", 1),
                      ("value is not valid JSON (Expecting value at char 3)", 1)]  # fmt: skip


def test_equal_counts_keep_the_order_their_reasons_first_appear() -> None:
    counts = reason_counts([letter_with(r) for r in ["b", "a", "c", "a", "c"]])

    assert counts == [("a", 2), ("c", 2), ("b", 1)]


def test_no_letters_have_no_reasons() -> None:
    assert reason_counts([]) == []


# -- the demo's event stream ---------------------------------------------------------------------


def fixed_clock() -> float:
    return 1_795_000_000.0


def take(stream: EventStream, n: int) -> list[tuple[bytes, bytes | None, str]]:
    return [stream.next() for _ in range(n)]


def test_event_stream_kinds_are_known_and_roughly_in_their_shares() -> None:
    made = take(EventStream(seed=7, clock=fixed_clock), 5000)

    kinds = Counter(kind for _, _, kind in made)

    assert set(kinds) == {events.EVENT, events.DUPLICATE, events.NOT_JSON, events.INVALID}
    malformed = kinds[events.NOT_JSON] + kinds[events.INVALID]
    assert 0.01 < malformed / 5000 < 0.03
    assert 0.015 < kinds[events.DUPLICATE] / 5000 < 0.045


def test_event_stream_records_are_what_their_kind_says() -> None:
    made = take(EventStream(seed=11, clock=fixed_clock), 3000)
    seen: set[tuple[bytes, bytes | None]] = set()

    for value, key, kind in made:
        if kind == events.NOT_JSON:
            with pytest.raises(ValueError):
                json.loads(value)
            assert key is None
            continue
        body = json.loads(value)
        if kind == events.INVALID:
            broken = (body.get("severity") not in range(1, 6) or "alert_name" not in body
                      or body["time"] > fixed_clock() + 3600)  # fmt: skip
            assert broken and key is None, body
            continue
        if kind == events.DUPLICATE:
            assert (value, key) in seen  # the very bytes of an earlier event
            continue
        assert body["status"] in ("ABNORMAL", "RECOVERED") and 1 <= body["severity"] <= 5
        assert key == f"{body['dimensions']['service']}/{body['target']}".encode()
        assert body["time"] == round(fixed_clock(), 3)
        seen.add((value, key))


def test_event_streams_with_different_seeds_differ() -> None:
    a = take(EventStream(seed=1, clock=fixed_clock), 200)
    b = take(EventStream(seed=2, clock=fixed_clock), 200)

    assert [v for v, _, _ in a] != [v for v, _, _ in b]


def test_event_streams_with_one_seed_are_byte_identical() -> None:
    a = take(EventStream(seed=7, clock=fixed_clock), 2000)
    b = take(EventStream(seed=7, clock=fixed_clock), 2000)

    assert a == b
    assert {kind for _, _, kind in a} == {events.EVENT, events.DUPLICATE, *events.MALFORMED}


# -- the demo's settle rule ----------------------------------------------------------------------


def snap(pulled: int, delivered: int, dead: int, invalid: int = 0, **built: int) -> Snapshot:
    return Snapshot(pulled, {"delivered": delivered, "dead_lettered": dead},
                    {"invalid": invalid, **built})  # fmt: skip


def test_settled_when_every_record_is_pulled_counted_and_built() -> None:
    done = snap(10, delivered=8, dead=2, invalid=1, opened=3, updated=2, duplicate=2)

    assert done.built == 7
    assert done.dead_letters == 3
    assert done.settled(10)


@pytest.mark.parametrize(
    "snapshot",
    [
        pytest.param(snap(9, delivered=8, dead=2, opened=8), id="not-all-pulled"),
        pytest.param(snap(10, delivered=7, dead=2, opened=7), id="not-all-counted"),
        pytest.param(snap(10, delivered=8, dead=2, opened=7), id="not-all-built"),
        pytest.param(snap(10, delivered=8, dead=2, opened=7, replayed=1), id="replays-dont-count"),
    ],
)
def test_not_settled_while_records_are_on_their_way(snapshot: Snapshot) -> None:
    assert not snapshot.settled(10)


def test_an_empty_run_is_settled_at_zero() -> None:
    assert Snapshot(0, {}, {}).settled(0)
