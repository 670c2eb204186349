"""``workers offsets reset`` by kafka-consumer-groups' targets (``--shift-by``, ``--to-datetime``,
``--by-duration``, ``--export`` and ``--from-file``), and ``workers lag --watch``'s pace, against
the real Redis and broker (see test_cli.py for how the command is run)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import arrow
import pytest
from kafka import KafkaConsumer, TopicPartition

from tests.integration.cli_support import Cli, pipeline, send_each
from tests.integration.conftest import TopicFactory
from workers.state.keys import Space
from workers.state.offsets import RedisOffsetStore

pytestmark = pytest.mark.integration


@pytest.fixture
def three(cli: Cli, new_topic: TopicFactory, kafka_bootstrap: str) -> str:
    """Pipeline ``alarms`` on a fresh topic: 5, 3 and 0 records in partitions 0, 1, 2."""
    topic = new_topic(3)
    cli.conf["workers_pipelines"] = {"alarms": pipeline(topic)}
    send_each(kafka_bootstrap, topic, {0: 5, 1: 3})
    return topic


def space(key_prefix: str, topic: str) -> Space:
    return Space(key_prefix, "test", "workers", topic)


def stored(redis_client: Any, key_prefix: str, topic: str) -> dict[int, int]:
    raw = redis_client.hgetall(space(key_prefix, topic).key("offsets"))
    return {int(p): int(o) for p, o in raw.items()}


def state(redis_client: Any, key_prefix: str, topic: str) -> list[Any]:
    """The stored offsets and generations, byte for byte."""
    return [redis_client.dump(space(key_prefix, topic).key(k)) for k in ("offsets", "generations")]


def test_shift_by_moves_each_partition_from_its_committed_offset_stopping_at_the_log_edges(
    cli: Cli, three: str, redis_client: Any, key_prefix: str
) -> None:
    cli("offsets", "reset", "alarms", "--to", "latest", "--yes")

    back = cli("offsets", "reset", "alarms", "--shift-by", "-2", "--yes")
    after_back = stored(redis_client, key_prefix, three)
    ahead = cli("offsets", "reset", "alarms", "--shift-by", "+4", "--partition", "0", "--yes")
    after_ahead = stored(redis_client, key_prefix, three)
    far = cli("offsets", "reset", "alarms", "--shift-by=-100", "--json", "--yes")

    assert [x.exit_code for x in (back, ahead, far)] == [0, 0, 0]
    assert after_back == {0: 3, 1: 1, 2: 0}
    assert back.stdout.splitlines()[1:5] == [
        "partition  before  after  change",
        "        0       5      3  re-reads 2",
        "        1       3      1  re-reads 2",
        "        2       0      0  unchanged (stopped at the log start)",
    ]
    assert after_ahead == {0: 5, 1: 1, 2: 0}  # 3 + 4 stops at the log end, 5
    assert "        0       3      5  skips 2 (stopped at the log end)" in ahead.stdout
    assert "Reset 1 partition(s) by +4?" not in ahead.stdout  # --yes: no question
    doc = json.loads(far.stdout)
    assert (doc["method"], doc["target"], doc["time_ms"]) == ("shift_by", "-100", None)
    assert [(p["partition"], p["before"], p["after"], p["clamped"]) for p in doc["partitions"]] == [
        (0, 5, 0, True), (1, 1, 0, True), (2, 0, 0, True),
    ]  # fmt: skip
    assert stored(redis_client, key_prefix, three) == {0: 0, 1: 0, 2: 0}


def test_shift_by_refuses_partitions_with_nothing_committed_and_changes_nothing(
    cli: Cli, three: str, redis_client: Any, key_prefix: str
) -> None:
    cli("offsets", "reset", "alarms", "--to", "earliest", "--partition", "1", "--yes")
    before = state(redis_client, key_prefix, three)

    refused = cli("offsets", "reset", "alarms", "--shift-by", "1", "--yes", "--json")
    chosen = cli("offsets", "reset", "alarms", "--shift-by", "1", "--partition", "1", "--yes")

    assert refused.exit_code == 1 and refused.stdout == ""
    assert refused.stderr == (
        f"Error: cannot shift partition(s) 0, 2 of {three!r}: nothing is committed there yet; "
        "reset them with --to first, or choose the others with --partition\n"
    )
    assert before[0] is not None
    assert chosen.exit_code == 0 and stored(redis_client, key_prefix, three) == {1: 1}


def test_shift_by_asks_with_the_shift_and_a_no_changes_nothing(
    cli: Cli, three: str, redis_client: Any, key_prefix: str
) -> None:
    cli("offsets", "reset", "alarms", "--to", "latest", "--yes")
    before = state(redis_client, key_prefix, three)

    declined = cli("offsets", "reset", "alarms", "--shift-by", "-1", input="n\n")
    dry = cli("offsets", "reset", "alarms", "--shift-by", "-1", "--dry-run")

    assert declined.exit_code == 1 and "Reset 3 partition(s) by -1? [y/N]" in declined.stdout
    assert dry.exit_code == 0 and dry.stdout.splitlines()[-1] == "dry run: nothing changed"
    assert state(redis_client, key_prefix, three) == before


def _offsets_for(kafka: str, topic: str, when: arrow.Arrow, parts: int) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=kafka)
    found = consumer.offsets_for_times(
        {TopicPartition(topic, p): int(when.float_timestamp * 1000) for p in range(parts)}
    )
    consumer.close()
    return {tp.partition: hit.offset for tp, hit in found.items() if hit is not None}


@pytest.fixture
def two_groups(cli: Cli, new_topic: TopicFactory, kafka_bootstrap: str) -> dict[str, Any]:
    """Pipeline ``alarms`` on a 2-partition topic: 2 records per partition, a pause of 2.4 s,
    2 more; ``gap`` is the middle of the pause, ``first_end`` its start."""
    topic = new_topic(2)
    cli.conf["workers_pipelines"] = {"alarms": pipeline(topic)}
    send_each(kafka_bootstrap, topic, {0: 2, 1: 2})
    first_end = arrow.utcnow()
    time.sleep(2.4)
    second_start = arrow.utcnow()
    send_each(kafka_bootstrap, topic, {0: 2, 1: 2})
    return {"topic": topic, "gap": first_end + (second_start - first_end) / 2,
            "first_end": first_end}  # fmt: skip


def test_to_datetime_goes_to_the_first_record_at_or_after_it_without_a_zone_meaning_utc(
    cli: Cli, two_groups: dict[str, Any], kafka_bootstrap: str, redis_client: Any,
    key_prefix: str,
) -> None:  # fmt: skip
    topic, gap = two_groups["topic"], two_groups["gap"]
    expected = _offsets_for(kafka_bootstrap, topic, gap, 2)
    utc = gap.to("UTC").format("YYYY-MM-DDTHH:mm:ss.SSS")  # kafka-consumer-groups' form
    zoned = gap.to("+08:00").format("YYYY-MM-DDTHH:mm:ss.SSSZZ")

    def reset_to(text: str) -> tuple[dict[int, int], dict[str, Any]]:
        result = cli("offsets", "reset", "alarms", "--to-datetime", text, "--yes", "--json")
        assert result.exit_code == 0, result.stderr
        return stored(redis_client, key_prefix, topic), json.loads(result.stdout)

    (at_utc, doc), (at_zone, _) = reset_to(utc), reset_to(zoned)
    at_start, _ = reset_to("2000-01-01T00:00:00.000")
    at_end, _ = reset_to("9999-01-01T00:00Z")

    assert at_utc == at_zone == expected == {0: 2, 1: 2}
    assert (doc["method"], doc["target"]) == ("to_datetime", utc)
    assert abs(doc["time_ms"] - gap.float_timestamp * 1000) < 1.5  # no zone: UTC, to the ms
    assert at_start == {0: 0, 1: 0} and at_end == {0: 4, 1: 4}


def test_by_duration_goes_to_the_first_record_that_long_before_now(
    cli: Cli, two_groups: dict[str, Any], redis_client: Any, key_prefix: str
) -> None:
    topic, first_end = two_groups["topic"], two_groups["first_end"]

    def reset_by(text: str) -> dict[int, int]:
        result = cli("offsets", "reset", "alarms", "--by-duration", text, "--yes")
        assert result.exit_code == 0, result.stderr
        return stored(redis_client, key_prefix, topic)

    hour_back = reset_by("PT1H")
    short = reset_by("-1h")
    nothing_back = reset_by("PT0S")
    # 0.2 s into the 2.4 s pause, as a duration back from the test's now. The command's own now
    # comes later, which only moves its target later into the pause: 2.2 s to spare.
    into_gap = reset_by(f"PT{(arrow.utcnow() - first_end).total_seconds() - 0.2:.3f}S")
    compound = reset_by("1d2h")

    assert hour_back == short == compound == {0: 0, 1: 0}
    assert nothing_back == {0: 4, 1: 4}  # now: after the last record, the log end
    assert into_gap == {0: 2, 1: 2}


def test_an_exported_plan_applied_from_a_file_restores_those_offsets(
    cli: Cli, three: str, redis_client: Any, key_prefix: str, tmp_path: Path
) -> None:
    # Arrange: a plan made by a dry run, then the offsets moved elsewhere
    cli("offsets", "reset", "alarms", "--to", "latest", "--yes")
    exported = cli("offsets", "reset", "alarms", "--shift-by", "-2", "--dry-run", "--export")
    plan = tmp_path / "plan.csv"
    plan.write_text(exported.stdout)
    unchanged = stored(redis_client, key_prefix, three)
    cli("offsets", "reset", "alarms", "--to", "earliest", "--yes")

    # Act
    applied = cli("offsets", "reset", "alarms", "--from-file", str(plan), "--yes", "--export")
    from_stdin = cli("offsets", "reset", "alarms", "--from-file", "-", "--yes", "--json",
                     input=f"topic,partition,offset\n{three},1,3\n")  # fmt: skip

    # Assert
    assert exported.exit_code == 0 and exported.stdout == f"{three},0,3\n{three},1,1\n{three},2,0\n"
    assert "dry run: nothing changed" in exported.stderr  # the preview: on stderr
    assert unchanged == {0: 5, 1: 3, 2: 0}
    assert applied.exit_code == 0 and applied.stdout == exported.stdout  # what was stored
    assert "reset 3 partition(s)" in applied.stderr
    doc = json.loads(from_stdin.stdout)
    assert (doc["method"], doc["target"]) == ("from_file", "-")
    assert [(p["partition"], p["before"], p["after"]) for p in doc["partitions"]] == [(1, 1, 3)]
    assert stored(redis_client, key_prefix, three) == {0: 3, 1: 3, 2: 0}


@pytest.mark.parametrize(
    ("lines", "says"),
    [
        ("{t},0,1\n{t},7,1\n", "plan.csv line 2: '{t}' has no partition 7 (it has partitions 0-2)"),
        ("{t},0,1\n{t},1,2\n{t},0,3\n", "plan.csv line 3: partition 0 again (first on line 1)"),
        ("{t},0,1\nother,1,2\n", "plan.csv line 2: topic 'other' is not the pipeline's topic"),
        ("ops,{t},0,1\n", "plan.csv line 1: group 'ops' is not the pipeline's group 'workers'"),
        ("{t},0,-3\n", "plan.csv line 1: offset '-3' is not an offset"),
    ],
)  # fmt: skip
def test_a_plan_with_a_bad_line_is_refused_naming_it_and_nothing_is_applied(
    cli: Cli, three: str, redis_client: Any, key_prefix: str, tmp_path: Path, lines: str,
    says: str,
) -> None:  # fmt: skip
    cli("offsets", "reset", "alarms", "--to", "latest", "--yes")
    before = state(redis_client, key_prefix, three)
    plan = tmp_path / "plan.csv"
    plan.write_text(lines.format(t=three))

    result = cli("offsets", "reset", "alarms", "--from-file", str(plan), "--yes", "--json")

    assert result.exit_code == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("Error: Invalid value for --from-file: ")
    assert says.format(t=three) in result.stderr
    assert state(redis_client, key_prefix, three) == before


def test_lag_watch_off_a_terminal_prints_snapshots_with_the_pace_between_them(
    cli: Cli, new_topic: TopicFactory, kafka_bootstrap: str, redis_client: Any,
    key_prefix: str, tmp_path: Path,
) -> None:  # fmt: skip
    # Arrange: 10 records unread
    topic = new_topic(1)
    cli.conf["workers_pipelines"] = {"alarms": pipeline(topic)}
    send_each(kafka_bootstrap, topic, {0: 10})
    cli("offsets", "reset", "alarms", "--to", "earliest", "--yes")
    proc = cli.subprocess(tmp_path, "lag", "--watch", "--count", "2", "--interval", "4")
    assert proc.stdout is not None

    # Act: 6 records committed after the first snapshot (the command waits 4 s before the next)
    first = [proc.stdout.readline(), proc.stdout.readline()]
    RedisOffsetStore(redis_client).reset(space(key_prefix, topic), {0: 6})
    try:
        rest, err = proc.communicate(timeout=60)
    finally:
        proc.kill()

    # Assert
    blank, head, line, *more = rest.splitlines()
    assert proc.returncode == 0, err
    assert first[0].endswith("  every 4s, Ctrl-C to stop\n") and head.endswith("Ctrl-C to stop")
    assert first[1].startswith(f"alarms  test/{topic}  lag 10  ")
    assert first[1].endswith("  read -  lag -  catch up -\n")
    assert blank == "" and more == [] and "\x1b" not in rest
    assert line.startswith(f"alarms  test/{topic}  lag 4  ")
    pace = line.split("  read ")[1]
    # 6 records over the 4 s pace, or a little more under load: 1.5/s, shown rounded
    assert pace.startswith(("1/s  lag -", "2/s  lag -")) and "  catch up " in pace
    assert pace.split("catch up ")[1].endswith("s") and "never" not in pace


def test_lag_watch_count_json_prints_one_line_per_refresh_and_a_still_lag_never_catches_up(
    cli: Cli, new_topic: TopicFactory, kafka_bootstrap: str
) -> None:
    topic = new_topic(1)
    cli.conf["workers_pipelines"] = {
        "alarms": pipeline(topic),
        "idle": pipeline(topic, group="idle"),
    }
    send_each(kafka_bootstrap, topic, {0: 3})
    cli("offsets", "reset", "alarms", "--to", "earliest", "--yes")
    cli("offsets", "reset", "idle", "--to", "latest", "--yes")

    text = cli("lag", "--watch", "--count", "2", "--interval", "0.5")
    as_json = cli("lag", "--watch", "--count", "2", "--interval", "0.5", "--json")

    snapshots = text.stdout.split("\n\n")
    docs = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert text.exit_code == 0 and as_json.exit_code == 0 and len(snapshots) == 2
    assert snapshots[0].splitlines()[1].endswith("  read -  lag -  catch up -")
    assert snapshots[1].splitlines()[1].endswith("  read 0/s  lag +0/s  catch up never")
    assert snapshots[1].splitlines()[2].endswith("  read 0/s  lag +0/s  catch up caught up")
    assert len(docs) == 2
    paces = [[(r["read_per_second"], r["lag_change_per_second"], r["catch_up_seconds"])
              for r in d["pipelines"]] for d in docs]  # fmt: skip
    assert paces == [[(None, None, None), (None, None, 0.0)],
                     [(0.0, 0.0, None), (0.0, 0.0, 0.0)]]  # fmt: skip
