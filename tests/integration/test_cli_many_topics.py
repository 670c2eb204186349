"""The ``workers`` commands on pipelines over many topics (``topics: [...]`` and
``topic_pattern``) against the real Redis and broker: offsets show and lag per topic with the
pipeline's totals, reset per topic (``--topic``, plans naming several topics), dead letters
replayed to the topic they came from, check and topics create, and the exporter's series per
topic, including a topic created later and one that does not match (see test_cli.py for how
the command is run)."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from tests.integration.cli_support import Cli, send_each
from tests.integration.conftest import TopicFactory
from tests.integration.test_exporter import BOUND, Exporter, Samples
from workers.state.keys import Space, pipeline_key
from workers.state.topics import TopicRegistry
from workers.testing import wait_until

pytestmark = pytest.mark.integration


def many(**options: Any) -> dict[str, Any]:
    return {"cluster": "test", "tasks": ["workers.alarms.parse"], "start": "earliest", **options}


@dataclass(frozen=True)
class Topics:
    """Two topics the pattern matches (``a``: 2 partitions, ``b``: 1), one it does not, the
    pattern, and the dead-letter topic of the pattern's pipeline ``pat``."""

    base: str
    a: str
    b: str
    other: str
    pattern: str
    dlq: str


@pytest.fixture
def topics(cli: Cli, new_topic: TopicFactory) -> Topics:
    """Pipelines ``pat`` (``topic_pattern``) and ``listed`` (``topics``: a, b and one that
    does not exist), each with a dead-letter topic of its own."""
    base = f"mt-{uuid.uuid4().hex[:10]}"
    found = Topics(base, new_topic(2, name=f"{base}-a"), new_topic(1, name=f"{base}-b"),
                   new_topic(1, name=f"other-{base}"), f"{base}-[a-z]",
                   new_topic(1, name=f"{base}.dlq"))  # fmt: skip
    new_topic(1, name=f"{base}.listed.dlq")
    cli.conf["workers_pipelines"] = {
        "pat": many(topic_pattern=found.pattern, dead_letter_topic=found.dlq,
                    new_topic_start="latest"),
        "listed": many(topics=[found.a, found.b, f"{base}-zz"],
                       dead_letter_topic=f"{base}.listed.dlq"),
    }  # fmt: skip
    return found


def stored(redis_client: Any, key_prefix: str, topic: str) -> dict[int, int]:
    raw = redis_client.hgetall(Space(key_prefix, "test", "workers", topic).key("offsets"))
    return {int(p): int(o) for p, o in raw.items()}


def objects(cli: Cli, *args: str) -> list[dict[str, Any]]:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    return list(doc["pipelines"])


# -- offsets show and lag ------------------------------------------------------------------------


def test_offsets_show_and_lag_show_each_topic_and_the_totals_and_a_topic_created_later(
    cli: Cli, topics: Topics, kafka_bootstrap: str, new_topic: TopicFactory, redis_client: Any,
    key_prefix: str,
) -> None:  # fmt: skip
    # Arrange: records in both matching topics (and in the other one), offsets stored
    t = topics
    send_each(kafka_bootstrap, t.a, {0: 3, 1: 2})
    send_each(kafka_bootstrap, t.b, {0: 4})
    send_each(kafka_bootstrap, t.other, {0: 5})
    assert cli("offsets", "reset", "pat", "--to", "earliest", "--yes").exit_code == 0
    assert cli("offsets", "reset", "pat", "--topic", t.a, "--to", "1", "--partition", "0",
               "--yes").exit_code == 0  # fmt: skip

    # Act
    shown = objects(cli, "offsets", "show", "pat")
    text = cli("offsets", "show", "pat").stdout.splitlines()
    only_b = objects(cli, "offsets", "show", "pat", "--topic", t.b)
    lag_text = cli("lag", "pat").stdout.splitlines()
    lag_rows = objects(cli, "lag", "pat")
    watched = cli("lag", "pat", "--watch", "--interval", "0.5", "--count", "2", "--json")

    # Assert: one object per matching topic, never the other one; a table with a topic column
    assert [(o["pipeline"], o["topic"], o["lag"]) for o in shown] == [("pat", t.a, 4),
                                                                      ("pat", t.b, 4)]  # fmt: skip
    assert [[p["stored"] for p in o["partitions"]] for o in shown] == [[1, 0], [0]]
    assert text[0].startswith(f"pipeline pat: test/topics matching '{t.pattern}', group workers, "
                              "beat; 2 topics; lag 8, oldest unread ")  # fmt: skip
    assert [row.split()[:3] for row in text[2:5]] == [[t.a, "0", "1"], [t.a, "1", "0"],
                                                      [t.b, "0", "0"]]  # fmt: skip
    assert [o["topic"] for o in only_b] == [t.b]
    assert lag_text[0].startswith(f"pat  test/topics matching '{t.pattern}' (2 topics)  lag 8  ")
    assert lag_text[1].startswith(f"  {t.a}  lag 4  ") and "held 0/2" in lag_text[1]
    assert lag_text[2].startswith(f"  {t.b}  lag 4  ")
    assert [(r["topic"], r["lag"], r["partition_count"]) for r in lag_rows] == [
        (t.a, 4, 2), (t.b, 4, 1)]  # fmt: skip
    paces = [[(r["topic"], r["read_per_second"]) for r in json.loads(line)["pipelines"]]
             for line in watched.stdout.splitlines()]  # fmt: skip
    assert paces == [[(t.a, None), (t.b, None)], [(t.a, 0.0), (t.b, 0.0)]]  # each topic's own
    assert stored(redis_client, key_prefix, t.other) == {}

    # Act: a pull found a and b at its first look; then a matching topic appears
    registry = TopicRegistry(redis_client, pipeline_key(key_prefix, "test", "workers", "pat"))
    registry.register([t.a, t.b], int(time.time() * 1000))
    later = new_topic(1, name=f"{t.base}-c")
    after = objects(cli, "offsets", "show", "pat")
    after_text = cli("offsets", "show", "pat").stdout
    after_lag = cli("lag", "pat").stdout.splitlines()

    # Assert: it is shown, not started, starting at new_topic_start
    assert [(o["topic"], o["lag"]) for o in after] == [(t.a, 4), (t.b, 4), (later, None)]
    assert f"nothing stored yet in topic {later}: the first pull starts at latest" in after_text
    assert after_lag[0].startswith(f"pat  test/topics matching '{t.pattern}' (3 topics)  lag 8")
    assert after_lag[3] == f"  {later}  not started (starts at latest)"


def test_a_topic_the_pipeline_does_not_read_is_refused_and_listed_topics_missing_are_named(
    cli: Cli, topics: Topics
) -> None:
    t = topics

    other = cli("offsets", "show", "pat", "--topic", t.other)
    without = cli("offsets", "show", "--topic", t.a)
    listed = cli("offsets", "show", "listed").stdout
    lag = cli("lag", "listed").stdout

    assert other.exit_code == 1 and len(other.stderr.splitlines()) == 1
    assert f"topic '{t.other}' is not one of the topics of pipeline 'pat' now" in other.stderr
    assert without.exit_code == 2 and "--topic needs PIPELINE" in without.stderr
    assert f"listed topics not on the cluster (read once created): {t.base}-zz" in listed
    assert f"(2 topics)  missing {t.base}-zz  not started (starts at earliest)" in lag


def test_a_pattern_that_matches_nothing_is_shown_with_no_topic(cli: Cli, topics: Topics) -> None:
    cli.conf["workers_pipelines"] = {"none": many(topic_pattern=f"{topics.base}-none-.*",
                                                  dead_letter_topic=topics.dlq)}  # fmt: skip

    text = cli("offsets", "show", "none").stdout
    shown = objects(cli, "offsets", "show", "none")
    lag = cli("lag", "none").stdout.strip()

    assert text.splitlines()[1] == f"no topic matches '{topics.base}-none-.*' on cluster test now"
    assert [(o["topic"], o["lag"], o["partitions"]) for o in shown] == [(None, None, [])]
    assert lag.endswith("(0 topics)  no topic matches now")


# -- reset ---------------------------------------------------------------------------------------


def test_reset_moves_every_topic_or_one_and_plans_name_the_topic_of_each_line(
    cli: Cli, topics: Topics, kafka_bootstrap: str, redis_client: Any, key_prefix: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    # Arrange
    t = topics
    send_each(kafka_bootstrap, t.a, {0: 3, 1: 2})
    send_each(kafka_bootstrap, t.b, {0: 4})

    # Act: every topic; one topic (as JSON); a plan exported and applied
    every = cli("offsets", "reset", "pat", "--to", "earliest", "--yes")
    one = cli("offsets", "reset", "pat", "--topic", t.b, "--to", "latest", "--yes", "--json")
    exported = cli("offsets", "reset", "pat", "--shift-by", "1", "--dry-run", "--export")
    plan = tmp_path / "plan.csv"
    plan.write_text(f"{t.a},1,2\n{t.b},0,1\n")
    applied = cli("offsets", "reset", "pat", "--from-file", str(plan), "--yes")

    # Assert
    assert every.exit_code == 0, every.output
    assert f"pipeline pat: test/topics matching '{t.pattern}', group workers; 2 topic(s)" in (
        every.stdout)  # fmt: skip
    assert "reset 3 partition(s) of 2 topic(s)" in every.stdout
    doc = json.loads(one.stdout)
    assert (doc["topic"], [(r["topic"], r["partition"], r["after"]) for r in doc["partitions"]]) \
        == (t.b, [(t.b, 0, 4)])  # fmt: skip
    assert exported.stdout == f"{t.a},0,1\n{t.a},1,1\n{t.b},0,4\n"  # b is at its end already
    assert applied.exit_code == 0, applied.output
    assert stored(redis_client, key_prefix, t.a) == {0: 0, 1: 2}  # partition 0 not in the plan
    assert stored(redis_client, key_prefix, t.b) == {0: 1}


def test_reset_refuses_a_partition_without_a_topic_and_a_plan_line_of_another_topic(
    cli: Cli, topics: Topics, redis_client: Any, key_prefix: str, tmp_path: Path
) -> None:
    t = topics
    plan = tmp_path / "plan.csv"
    plan.write_text(f"{t.a},0,0\n{t.other},0,0\n")

    partition = cli("offsets", "reset", "pat", "--to", "earliest", "--partition", "0", "--yes")
    foreign = cli("offsets", "reset", "pat", "--from-file", str(plan), "--yes")
    not_read = cli("offsets", "reset", "pat", "--topic", t.other, "--to", "earliest", "--yes")
    with_plan = cli("offsets", "reset", "pat", "--topic", t.a, "--from-file", str(plan), "--yes")

    assert partition.exit_code == 2 and len(partition.stderr.splitlines()) == 1
    assert "--partition needs --topic: pipeline pat reads topics matching" in partition.stderr
    assert foreign.exit_code == 2 and len(foreign.stderr.splitlines()) == 1
    assert (f"plan.csv line 2: topic '{t.other}' is not one of the pipeline's topics now "
            f"(topics matching '{t.pattern}')") in foreign.stderr  # fmt: skip
    assert not_read.exit_code == 1 and "is not one of the topics of pipeline 'pat'" in (
        not_read.stderr)  # fmt: skip
    assert with_plan.exit_code == 2 and "--from-file and --topic" in with_plan.stderr
    assert stored(redis_client, key_prefix, t.a) == {}  # nothing applied


def test_a_listed_pipeline_resets_the_listed_topics_that_exist(
    cli: Cli, topics: Topics, redis_client: Any, key_prefix: str
) -> None:
    result = cli("offsets", "reset", "listed", "--to", "latest", "--yes")

    assert result.exit_code == 0, result.output
    assert stored(redis_client, key_prefix, topics.a) == {0: 0, 1: 0}
    assert stored(redis_client, key_prefix, topics.b) == {0: 0}


# -- dead letters --------------------------------------------------------------------------------


def letter(producer: KafkaProducer, dlq: str, topic: str, value: bytes) -> None:
    headers = [("workers.cluster", b"test"), ("workers.topic", topic.encode()),
               ("workers.partition", b"0"), ("workers.offset", b"7"),
               ("workers.reason", b"value is not valid JSON"), ("trace", b"t-1")]  # fmt: skip
    producer.send(dlq, value=value, key=b"k", headers=headers).get(timeout=30)


def records_of(kafka: str, topic: str) -> list[Any]:
    consumer = KafkaConsumer(bootstrap_servers=kafka, consumer_timeout_ms=2000)
    consumer.assign([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)])
    consumer.seek_to_beginning()
    found = list(consumer)
    consumer.close()
    return found


def test_dlq_replay_sends_each_letter_to_the_topic_it_came_from_and_skips_the_others(
    cli: Cli, topics: Topics, kafka_bootstrap: str
) -> None:
    # Arrange: letters of a, b and of a topic the pipeline does not read
    t = topics
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=0)
    letter(producer, t.dlq, t.a, b'{"to": "a"}')
    letter(producer, t.dlq, t.other, b'{"to": "other"}')
    letter(producer, t.dlq, t.b, b'{"to": "b"}')
    producer.close()

    # Act
    preview = cli("dlq", "replay", "pat", "--dry-run")
    done = cli("dlq", "replay", "pat", "--yes", "--json")
    again = cli("dlq", "replay", "pat", "--yes")

    # Assert: a and b got theirs, with the replay's header; the other letter was skipped
    assert preview.exit_code == 0, preview.output
    assert (f"2 letter(s) to replay to the topics they came from (test/topics matching "
            f"'{t.pattern}')") in preview.stdout  # fmt: skip
    skipped = (f"1 letter(s) cannot be replayed: the topic they came from is not one of the "
               f"pipeline's topics now ('{t.other}'); they are skipped")  # fmt: skip
    assert skipped in preview.stderr and skipped in done.stderr
    doc = json.loads(done.stdout)
    assert doc["topic"] is None
    assert [x["source"] for x in doc["letters"]] == [f"test/{t.a}/0/7", f"test/{t.b}/0/7"]
    assert [x["source"] for x in doc["unreplayable"]] == [f"test/{t.other}/0/7"]
    assert doc["positions"] == [{"partition": 0, "offset": 3}]
    for topic, value in ((t.a, b'{"to": "a"}'), (t.b, b'{"to": "b"}')):
        [record] = records_of(kafka_bootstrap, topic)
        headers = dict(record.headers)
        assert (record.value, record.key, headers["trace"]) == (value, b"k", b"t-1")
        assert headers["workers.replayed_from"].decode().startswith(f"{t.dlq}/0/")
    assert records_of(kafka_bootstrap, t.other) == []
    assert "0 letter(s) to replay" in again.stdout


# -- check and topics create ---------------------------------------------------------------------


def test_check_counts_the_topics_matched_and_warns_of_none_and_of_listed_ones_missing(
    cli: Cli, topics: Topics, new_topic: TopicFactory
) -> None:
    t = topics
    new_topic(1, name=f"{t.base}.none.dlq")
    none = many(topic_pattern=f"{t.base}-none-.*", dead_letter_topic=f"{t.base}.none.dlq")
    cli.conf["workers_pipelines"]["none"] = none

    result = cli("check", "--json")
    created = json.loads(cli("topics", "create", "--dry-run", "--json").stdout)

    findings = {f["what"]: f for f in json.loads(result.stdout)["findings"]}
    assert result.exit_code == 0, result.output  # warnings only
    assert (findings["pipeline pat"]["level"], findings["pipeline pat"]["detail"]) == (
        "ok", f"reads 2 topic(s) matching '{t.pattern}' (3 partitions): {t.a}, {t.b}")  # fmt: skip
    assert findings["pipeline listed"]["detail"].startswith("reads 2 topic(s) of 3 listed")
    assert findings["pipeline none"] == {
        "what": "pipeline none", "level": "warn", "hint": "no topic",
        "detail": f"no topic on cluster test matches '{t.base}-none-.*': nothing is read until "
                  "one is created"}  # fmt: skip
    missing = findings[f"topic test/{t.base}-zz"]
    assert (missing["level"], missing["hint"]) == ("warn", "topic missing")
    assert findings[f"topic test/{t.a}"]["level"] == "ok"
    assert findings["kafka copy pat"]["detail"] == (
        "2 topic(s): group workers: nothing stored yet")  # fmt: skip
    rows = {r["topic"]: r["status"] for r in created["topics"]}
    assert rows[t.pattern] == rows[f"{t.base}-none-.*"] == "skipped"
    assert rows[f"{t.base}-zz"] == "would create" and rows[t.a] == "exists"


# -- the exporter --------------------------------------------------------------------------------


def by_topic(samples: Samples, name: str) -> dict[tuple[str, str], float]:
    return {(dict(labels)["topic"], dict(labels)["partition"]): value
            for (sample, labels), value in samples.items() if sample == name}  # fmt: skip


@pytest.mark.slow
def test_the_exporter_serves_each_topic_of_a_pattern_and_drops_a_deleted_one(
    cli: Cli, topics: Topics, kafka_bootstrap: str, new_topic: TopicFactory,
    admin: KafkaAdminClient, tmp_path: Path, exporter_proc: list[subprocess.Popen[str]],
) -> None:  # fmt: skip
    # Arrange: offsets stored in a and b; an exporter of pipeline pat
    t = topics
    send_each(kafka_bootstrap, t.a, {0: 3})
    send_each(kafka_bootstrap, t.b, {0: 2})
    cli("offsets", "reset", "pat", "--to", "earliest", "--yes")
    cli.conf["workers_pipelines"] = {"pat": cli.conf["workers_pipelines"]["pat"]}
    proc = cli.subprocess(tmp_path, "exporter", "--host", "127.0.0.1", "--port", "0",
                          "--min-interval", "0", "--scrape-timeout", "5")  # fmt: skip
    exporter_proc.append(proc)
    exporter = Exporter(proc)

    # Act: scrape; create a matching topic; delete b
    first = exporter.scrape()
    later = new_topic(1, name=f"{t.base}-c")
    wait_until(lambda: (later, "0") in by_topic(exporter.scrape(), "workers_log_end_offset"),
               BOUND, "the new topic's series", explain=exporter.log)  # fmt: skip
    admin.delete_topics([t.b])
    wait_until(lambda: t.b not in {k[0] for k in by_topic(exporter.scrape(),
                                                          "workers_log_end_offset")},
               BOUND, "the deleted topic's series to go", explain=exporter.log)  # fmt: skip
    last = exporter.scrape()

    # Assert
    assert by_topic(first, "workers_lag_records") == {(t.a, "0"): 3.0, (t.a, "1"): 0.0,
                                                      (t.b, "0"): 2.0}  # fmt: skip
    assert by_topic(first, "workers_log_end_offset") == {(t.a, "0"): 3.0, (t.a, "1"): 0.0,
                                                         (t.b, "0"): 2.0}  # fmt: skip
    assert set(by_topic(last, "workers_log_end_offset")) == {(t.a, "0"), (t.a, "1"),
                                                             (later, "0")}  # fmt: skip
    assert (later, "0") not in by_topic(last, "workers_committed_offset")  # nothing stored
    assert not any(t.b in str(labels) for (_, labels) in last)
    assert not any(t.other in str(labels) for (_, labels) in first)
    up = [v for (name, _), v in last.items() if name == "workers_pipeline_up"]
    assert up == [1.0]
