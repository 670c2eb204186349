"""``workers produce`` and ``workers dlq show|replay`` against the real Redis and broker.

Dead letters are made by real pull cycles (``workers.pulling.engine.pulling``) over records that are
not JSON objects: one bad record per cycle, so each dead letter is its own batch on the
dead-letter topic (the test broker reports a partition's end at its last batch's start).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from kafka import KafkaConsumer, KafkaProducer

from tests.integration.cli_support import Cli, pipeline
from tests.integration.conftest import TopicFactory
from workers.connections import connections_for
from workers.pulling.engine import pulling, run_cycle
from workers.testing import free_port

pytestmark = pytest.mark.integration


def read_all(kafka: str, topic: str, expect: int, quiet: float = 1.0) -> list[Any]:
    """Every record of ``topic``: at least ``expect``, then until a poll of ``quiet`` s is empty."""
    consumer = KafkaConsumer(topic, bootstrap_servers=kafka, auto_offset_reset="earliest")
    records: list[Any] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        polled = consumer.poll(timeout_ms=int(quiet * 1000))
        records += [r for batch in polled.values() for r in batch]
        if not polled and len(records) >= expect:
            break
    consumer.close()
    return sorted(records, key=lambda r: (r.partition, r.offset))


# -- produce -------------------------------------------------------------------------------------

LINES = [
    '{"alert":{"host":"web-1"},"n":1}',
    '{"alert": {"host": "web-2"},  "n": 2, "text": "ü €"}',
    '{"alert":{"host":7},"n":3}',
    '{"n":4}',
]


def test_produce_sends_each_line_unchanged_keyed_by_a_dotted_field(
    cli: Cli, new_topic: TopicFactory, kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = new_topic(3)
    source = tmp_path / "records.jsonl"
    source.write_text("\n".join(LINES) + "\n", encoding="utf-8")

    result = cli("produce", topic, "--file", str(source), "--key", "alert.host")

    got = {(r.key, r.value) for r in read_all(kafka_bootstrap, topic, 4)}
    assert result.exit_code == 0 and result.stdout == f"sent 4 record(s) to test/{topic}\n"
    assert "1 record(s) had no 'alert.host' and were sent without a key" in result.stderr
    assert got == {
        (k, line.encode()) for k, line in zip([b"web-1", b"web-2", b"7", None], LINES, strict=True)
    }


def test_produce_reports_non_json_lines_by_number_and_sends_them_only_with_raw(
    cli: Cli, new_topic: TopicFactory, kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = new_topic(1)
    source = tmp_path / "mixed.jsonl"
    source.write_text('{"a":1}\nnot json\n\n{broken\n{"a":2}\n')

    refused = cli("produce", topic, "--file", str(source))
    after_refused = [r.value for r in read_all(kafka_bootstrap, topic, 2)]
    raw = cli("produce", topic, "--file", str(source), "--raw")

    assert refused.exit_code == 1 and refused.stdout == f"sent 2 record(s) to test/{topic}\n"
    assert [line.split(":")[0] for line in refused.stderr.splitlines()] == ["line 2", "line 4"]
    assert "line 2: not JSON: " in refused.stderr
    assert after_refused == [b'{"a":1}', b'{"a":2}']
    assert raw.exit_code == 0 and raw.stdout == f"sent 4 record(s) to test/{topic}\n"
    assert [r.value for r in read_all(kafka_bootstrap, topic, 6)][2:] == [
        b'{"a":1}', b"not json", b"{broken", b'{"a":2}',
    ]  # fmt: skip


PRODUCE_KEYS = {"ok", "cluster", "topic", "sent", "failed", "first_failure", "without_key",
                "invalid", "partitions", "records", "records_omitted"}  # fmt: skip


def test_produce_json_places_each_record_at_the_partition_and_offset_it_got(
    cli: Cli, new_topic: TopicFactory, kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = new_topic(3)
    source = tmp_path / "records.jsonl"
    source.write_text("\n".join([*LINES, "not json"]) + "\n", encoding="utf-8")

    result = cli("produce", topic, "--file", str(source), "--key", "alert.host", "--json")

    doc = json.loads(result.stdout)
    got = {(r.partition, r.offset): r.value for r in read_all(kafka_bootstrap, topic, 4)}
    placed = {(x["partition"], x["offset"]): x["line"] for x in doc["records"]}
    assert result.exit_code == 1 and set(doc) == PRODUCE_KEYS  # a line was refused
    assert (doc["ok"], doc["cluster"], doc["topic"]) == (False, "test", topic)
    assert (doc["sent"], doc["failed"], doc["first_failure"], doc["without_key"]) == (
        4, 0, None, 1,
    )  # fmt: skip
    assert [x["line"] for x in doc["records"]] == [1, 2, 3, 4]
    assert {where: LINES[n - 1].encode() for where, n in placed.items()} == got
    assert doc["invalid"] == [{"line": 5, "reason": doc["invalid"][0]["reason"]}]
    assert doc["invalid"][0]["reason"].startswith("not JSON: ")
    assert doc["records_omitted"] == 0
    assert sum(p["records"] for p in doc["partitions"]) == 4
    for span in doc["partitions"]:
        offsets = [o for p, o in placed if p == span["partition"]]
        assert (span["first_offset"], span["last_offset"]) == (min(offsets), max(offsets))
    assert "line 5: not JSON: " in result.stderr  # the problem lines, as without --json


def test_produce_reads_stdin(cli: Cli, new_topic: TopicFactory, kafka_bootstrap: str) -> None:
    topic = new_topic(1)

    implicit = cli("produce", topic, input='{"via":"default"}\n')
    explicit = cli("produce", topic, "--file", "-", input='{"via":"dash"}\n')

    assert (implicit.exit_code, explicit.exit_code) == (0, 0)
    assert [r.value for r in read_all(kafka_bootstrap, topic, 2)] == [
        b'{"via":"default"}', b'{"via":"dash"}',
    ]  # fmt: skip


def test_produce_takes_the_cluster_of_the_pipeline_reading_the_topic(
    cli: Cli, new_topic: TopicFactory, kafka_bootstrap: str
) -> None:
    topic, other = new_topic(1), new_topic(1)
    down = {"bootstrap_servers": [f"127.0.0.1:{free_port()}"]}
    cli.conf["workers_kafka_clusters"] = {
        "down": down,
        "live": {"bootstrap_servers": [kafka_bootstrap]},
    }
    cli.conf["workers_pipelines"] = {"p": {**pipeline(topic), "cluster": "live"}}

    by_pipeline = cli("--timeout", "1", "produce", topic, input="{}\n")
    ambiguous = cli("--timeout", "1", "produce", other, input="{}\n")
    chosen = cli("--timeout", "1", "produce", other, "--cluster", "live", input="{}\n")

    assert (
        by_pipeline.exit_code == 0 and by_pipeline.stdout == f"sent 1 record(s) to live/{topic}\n"
    )
    assert ambiguous.exit_code == 1
    assert ambiguous.stderr == (f"Error: cannot tell which cluster topic {other!r} is on; "
                                "pass --cluster (one of ['down', 'live'])\n")  # fmt: skip
    assert chosen.exit_code == 0 and len(read_all(kafka_bootstrap, other, 1)) == 1


def test_produce_to_an_unknown_cluster_fails_in_one_line(cli: Cli) -> None:
    result = cli("produce", "t", "--cluster", "nope", input="{}\n")

    assert result.exit_code == 1
    assert result.stderr == "Error: unknown Kafka cluster 'nope'; known: ['test']\n"


# -- dlq -----------------------------------------------------------------------------------------

BAD = [  # (key, value, headers): refused by the json codec, one per pull
    (b"k-1", b"oops", [("trace", b"t-1")]),
    (b"k-2", b"[1, 2]", []),
    (None, b"  nope", []),
]


@pytest.fixture
def dead(cli: Cli, new_topic: TopicFactory, kafka_bootstrap: str) -> dict[str, Any]:
    """Pipeline ``p`` whose pulls dead-lettered the ``BAD`` records, one pull each."""
    topic = new_topic(2)
    new_topic(2, name=f"{topic}.dlq")
    # No stage is registered on this app to derive the re-drive budget from: give it.
    queue = f"q-{cli.conf['workers_redis_key_prefix']}"
    cli.conf["workers_pipelines"] = {
        "p": pipeline(topic, start="earliest", queue=queue, redrive_seconds=600)
    }
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=0)
    app = Celery("pull", set_as_current=False)
    app.conf.update(cli.conf)
    sources = []
    try:
        for i, (key, value, headers) in enumerate(BAD):
            producer.send(topic, value=b'{"good": %d}' % i, key=key).get(timeout=30)
            meta = producer.send(topic, value=value, key=key, headers=headers).get(timeout=30)
            sources.append(f"test/{topic}/{meta.partition}/{meta.offset}")
            with pulling(app, "p") as puller:
                assert run_cycle(app, puller).dead_lettered == 1
    finally:
        producer.close()
        connections_for(app).close()
    return {"topic": topic, "sources": sources}


def letters(cli: Cli) -> dict[str, Any]:
    return json.loads(cli("dlq", "show", "p", "--json").stdout)


def test_dlq_show_counts_letters_by_reason_and_lists_their_sources(
    cli: Cli, dead: dict[str, Any]
) -> None:
    result = cli("dlq", "show", "p")
    data = letters(cli)

    out = result.stdout.splitlines()
    assert out[0] == f"test/{dead['topic']}.dlq: 3 dead letter(s), 3 not replayed"
    assert out[1] == "count  reason"
    assert sorted(out[2:5]) == [  # each reason as written: the numbers in it kept
        "    1  value is a JSON array; expected a JSON object",
        "    1  value is not valid JSON (Expecting value at char 0)",
        "    1  value is not valid JSON (Expecting value at char 2)",
    ]
    assert out[6] == "last 3:"
    assert sorted(x["source"] for x in data["letters"]) == sorted(dead["sources"])
    assert all(source in result.stdout for source in dead["sources"])
    assert (data["total"], data["pending"]) == (3, 3)
    assert {(x["key"], x["value"]) for x in data["letters"]} == {
        (k and k.decode(), v.decode()) for k, v, _ in BAD
    }


def test_dlq_show_json_keeps_its_shape_with_and_without_letters(
    cli: Cli, dead: dict[str, Any]
) -> None:
    data = letters(cli)
    limited = json.loads(cli("dlq", "show", "p", "--limit", "1", "--json").stdout)

    keys = {"ok", "pipeline", "cluster", "dead_letter_topic", "total", "pending", "reasons",
            "letters"}  # fmt: skip
    assert set(data) == set(limited) == keys
    assert (data["ok"], data["pipeline"], data["dead_letter_topic"]) == (
        True, "p", f"{dead['topic']}.dlq",
    )  # fmt: skip
    assert sorted(data["reasons"], key=lambda r: r["reason"]) == [
        {"reason": "value is a JSON array; expected a JSON object", "count": 1},
        {"reason": "value is not valid JSON (Expecting value at char 0)", "count": 1},
        {"reason": "value is not valid JSON (Expecting value at char 2)", "count": 1},
    ]
    assert [r["reason"] for r in data["reasons"]] == list(
        dict.fromkeys(x["reason"] for x in data["letters"])
    )  # equal counts: in the order the letters were read
    assert (limited["total"], len(limited["letters"])) == (3, 1)
    assert limited["letters"] == data["letters"][-1:]


REPLAY_KEYS = {"ok", "pipeline", "cluster", "topic", "dead_letter_topic", "dry_run", "letters",
               "unreplayable", "positions"}  # fmt: skip


def test_dlq_replay_json_lists_the_letters_and_the_positions_it_moved_to(
    cli: Cli, dead: dict[str, Any], kafka_bootstrap: str
) -> None:
    dry = cli("dlq", "replay", "p", "--dry-run", "--json")
    done = cli("dlq", "replay", "p", "--json", input="y\n")
    nothing = cli("dlq", "replay", "p", "--json", "--yes")

    docs = [json.loads(x.stdout) for x in (dry, done, nothing)]
    shown = letters(cli)["letters"]
    coordinates = sorted((x["partition"], x["offset"]) for x in shown)
    after = {p: o + 1 for p, o in coordinates}  # sorted: each partition's last offset wins
    assert [x.exit_code for x in (dry, done, nothing)] == [0, 0, 0]
    assert all(set(d) == REPLAY_KEYS and d["ok"] is True for d in docs)
    assert [d["dry_run"] for d in docs] == [True, False, False]
    assert docs[1]["topic"] == dead["topic"]
    assert docs[1]["dead_letter_topic"] == f"{dead['topic']}.dlq"
    assert [sorted((x["partition"], x["offset"]) for x in d["letters"]) for d in docs] == [
        coordinates, coordinates, [],
    ]  # fmt: skip
    assert sorted(x["source"] for x in docs[1]["letters"]) == sorted(dead["sources"])
    assert docs[0]["positions"] == []  # nothing replayed before
    assert sorted(x["reason"] for x in docs[0]["letters"]) == sorted(x["reason"] for x in shown)
    assert dry.stderr.splitlines()[1].split() == ["letter", "source", "reason"]  # the listing
    positions = [{"partition": p, "offset": o} for p, o in sorted(after.items())]
    assert docs[1]["positions"] == docs[2]["positions"] == positions
    assert all(d["unreplayable"] == [] for d in docs)
    assert "Replay 3 letter(s)? [y/N]" in done.stderr and "replayed 3 letter(s)" in done.stderr
    assert len(read_all(kafka_bootstrap, dead["topic"], 9)) == 9


def test_dlq_replay_dry_run_or_no_sends_nothing(
    cli: Cli, dead: dict[str, Any], kafka_bootstrap: str
) -> None:
    dry = cli("dlq", "replay", "p", "--dry-run")
    declined = cli("dlq", "replay", "p", input="n\n")

    shown = letters(cli)["letters"]
    listed = dry.stdout.splitlines()
    assert dry.exit_code == 0 and listed[0] == f"3 letter(s) to replay to test/{dead['topic']}"
    assert listed[1].split() == ["letter", "source", "reason"] and len(listed) == 5
    assert sorted(line.split(None, 2) for line in listed[2:]) == sorted(
        [f"{x['partition']}/{x['offset']}", x["source"], x["reason"]] for x in shown
    )
    assert sorted(x["source"] for x in shown) == sorted(dead["sources"])
    assert declined.exit_code == 1 and "Replay 3 letter(s)? [y/N]" in declined.stdout
    assert len(read_all(kafka_bootstrap, dead["topic"], 6)) == 6
    assert letters(cli)["pending"] == 3


def test_dlq_replay_sends_each_letter_back_once_with_its_key_value_and_origin(
    cli: Cli, dead: dict[str, Any], kafka_bootstrap: str
) -> None:
    first = cli("dlq", "replay", "p", "--yes")
    second = cli("dlq", "replay", "p", "--yes")

    records = read_all(kafka_bootstrap, dead["topic"], 9)
    replayed = [r for r in records if "workers.replayed_from" in dict(r.headers)]
    shown = letters(cli)
    origins = {f"{dead['topic']}.dlq/{x['partition']}/{x['offset']}" for x in shown["letters"]}
    assert first.stdout.splitlines()[-1] == "replayed 3 letter(s); skipped 0"
    assert second.stdout == f"0 letter(s) to replay to test/{dead['topic']}\n"
    assert len(records) == 9 and len(replayed) == 3
    assert sorted((r.key or b"", r.value) for r in replayed) == sorted(
        (k or b"", v) for k, v, _ in BAD
    )
    headers = {r.key: dict(r.headers) for r in replayed}
    assert {h["workers.replayed_from"].decode() for h in headers.values()} == origins
    assert headers[b"k-1"]["trace"] == b"t-1"  # its own headers kept, the dead letter's not
    assert [set(h) - {"trace"} for h in headers.values()] == [{"workers.replayed_from"}] * 3
    assert shown["pending"] == 0 and all(x["replayed"] for x in shown["letters"])


def test_dlq_replay_limit_replays_that_many_and_the_next_replay_the_rest(
    cli: Cli, dead: dict[str, Any], kafka_bootstrap: str
) -> None:
    one = cli("dlq", "replay", "p", "--limit", "1", "--yes")
    after_one = letters(cli)
    marked = cli("dlq", "show", "p").stdout.splitlines()[-3:]
    rest = cli("dlq", "replay", "p", "--yes")

    assert one.stdout.splitlines() == [
        f"1 letter(s) to replay to test/{dead['topic']}",
        "replayed 1 letter(s); skipped 0",
    ]
    assert [x["replayed"] for x in after_one["letters"]].count(True) == 1
    assert after_one["pending"] == 2
    assert sorted(row.split()[-1] for row in marked) == ["no", "no", "yes"]
    assert rest.stdout.splitlines()[-1] == "replayed 2 letter(s); skipped 0"
    assert len(read_all(kafka_bootstrap, dead["topic"], 9)) == 9
    assert letters(cli)["pending"] == 0


def test_dlq_replay_after_a_limit_finds_the_rest_of_one_dead_letter_batch(
    cli: Cli, new_topic: TopicFactory, kafka_bootstrap: str
) -> None:
    # One pull dead-letters three records at once: one batch on a one-partition dead-letter
    # topic, whose end this broker reports as the batch's first offset + 1.
    topic = new_topic(1)
    new_topic(1, name=f"{topic}.dlq")
    # No stage is registered on this app to derive the re-drive budget from: give it.
    queue = f"q-{cli.conf['workers_redis_key_prefix']}"
    cli.conf["workers_pipelines"] = {
        "p": pipeline(topic, start="earliest", queue=queue, redrive_seconds=600)
    }
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=50)
    for _, value, _ in BAD:
        producer.send(topic, value=value)
    producer.flush()
    producer.close()
    app = Celery("pull", set_as_current=False)
    app.conf.update(cli.conf)
    try:
        with pulling(app, "p") as puller:
            assert run_cycle(app, puller).dead_lettered == 3
    finally:
        connections_for(app).close()

    one = cli("dlq", "replay", "p", "--limit", "1", "--yes")
    rest = cli("dlq", "replay", "p", "--yes")

    assert one.stdout.splitlines()[-1] == "replayed 1 letter(s); skipped 0"
    assert rest.stdout.splitlines()[-1] == "replayed 2 letter(s); skipped 0"
    assert letters(cli)["pending"] == 0
