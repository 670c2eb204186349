"""``workers offsets show`` and ``workers offsets reset`` against the real Redis and broker
(see test_cli.py for how the command is run)."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import arrow
import pytest
from kafka import KafkaConsumer, TopicPartition

from tests.integration.cli_support import Cli, pipeline, send_each
from tests.integration.conftest import TopicFactory
from workers.state.keys import Space
from workers.state.leases import Owner, RedisLeases
from workers.state.ledger import Fence, Slice
from workers.state.ledger_redis import RedisLedger
from workers.state.offsets import Checkpoint, RedisOffsetStore

pytestmark = pytest.mark.integration

# -- offsets show and reset ----------------------------------------------------------------------

PIPELINE_KEYS = {"pipeline", "cluster", "topic", "group", "mode", "lag", "partitions",
                 "oldest_unread_age_seconds", "partitions_held", "counters",
                 "in_flight", "brake", "kafka_copy"}  # fmt: skip
PARTITION_KEYS = {"partition", "stored", "log_start", "log_end", "lag", "oldest_unread_ms",
                  "oldest_unread_age_seconds", "skipped_out_of_range", "holder",
                  "in_flight", "kafka_committed"}  # fmt: skip


@pytest.fixture
def one(cli: Cli, new_topic: TopicFactory) -> str:
    """Pipeline ``alarms`` on a fresh 3-partition topic."""
    topic = new_topic(3)
    cli.conf["workers_pipelines"] = {"alarms": pipeline(topic, start="latest-5")}
    return topic


def space(key_prefix: str, topic: str) -> Space:
    return Space(key_prefix, "test", "workers", topic)


def stored(redis_client: Any, key_prefix: str, topic: str, kind: str = "offsets") -> dict:
    raw = redis_client.hgetall(space(key_prefix, topic).key(kind))  # type: ignore[arg-type]
    return {int(p): int(o) for p, o in raw.items()}


def show(cli: Cli) -> dict[str, Any]:
    """The one pipeline of ``offsets show alarms --json``."""
    doc = json.loads(cli("offsets", "show", "alarms", "--json").stdout)
    assert set(doc) == {"ok", "pipelines", "errors"} and (doc["ok"], doc["errors"]) == (True, [])
    [pipeline] = doc["pipelines"]
    return pipeline


def test_offsets_show_before_any_pull_says_where_the_first_pull_starts(cli: Cli, one: str) -> None:
    text = cli("offsets", "show", "alarms").stdout.splitlines()

    assert text[0].startswith(f"pipeline alarms: test/{one}, group workers, beat; ")
    assert [row.split()[:2] for row in text[2:5]] == [["0", "-"], ["1", "-"], ["2", "-"]]
    assert text[5] == "nothing stored yet: the first pull starts at latest-5"
    assert [(p["stored"], p["lag"]) for p in show(cli)["partitions"]] == [(None, None)] * 3


def test_offsets_show_lag_is_log_end_minus_stored_with_the_oldest_unread_time(
    cli: Cli, one: str, kafka_bootstrap: str
) -> None:
    sent = send_each(kafka_bootstrap, one, {0: 4, 1: 2})
    cli("offsets", "reset", "alarms", "--to", "earliest", "--yes")
    cli("offsets", "reset", "alarms", "--to", "1", "--partition", "0", "--yes")

    data = show(cli)
    text = cli("offsets", "show", "alarms").stdout.splitlines()

    parts = data["partitions"]
    assert [(p["stored"], p["log_end"], p["lag"]) for p in parts] == [
        (1, 4, 3),
        (0, 2, 2),
        (0, 0, 0),
    ]
    assert [p["oldest_unread_ms"] for p in parts] == [
        sent[0][1].timestamp,
        sent[1][0].timestamp,
        None,
    ]
    assert parts[2]["oldest_unread_age_seconds"] is None
    assert data["lag"] == 5
    assert data["oldest_unread_age_seconds"] == max(
        p["oldest_unread_age_seconds"] for p in parts[:2]
    )
    assert text[0].startswith(
        f"pipeline alarms: test/{one}, group workers, beat; lag 5, oldest unread "
    )
    assert text[2].split()[:6] == ["0", "1", "1", "0", "4", "3"]  # Kafka's copy: 1 too
    assert "nothing stored" not in "\n".join(text)


def test_offsets_show_names_the_lease_holder_and_keeps_its_json_shape(
    cli: Cli, one: str, redis_client: Any, key_prefix: str
) -> None:
    cli("offsets", "reset", "alarms", "--to", "earliest", "--yes")
    leases = RedisLeases(redis_client, Owner("host-x", 4242, "workers.pull"), ttl=30)
    leases.acquire(space(key_prefix, one), [2])

    data = show(cli)
    every = json.loads(cli("offsets", "show", "--json").stdout)
    row = cli("offsets", "show", "alarms").stdout.splitlines()[4]

    holder = data["partitions"][2]["holder"]
    assert set(every) == {"ok", "pipelines", "errors"}  # the same shape without PIPELINE
    assert set(data) == PIPELINE_KEYS and [set(x) for x in every["pipelines"]] == [PIPELINE_KEYS]
    assert all(set(p) == PARTITION_KEYS for p in data["partitions"])
    assert {k: holder[k] for k in ("host", "pid", "task")} == {"host": "host-x", "pid": 4242,
                                                                "task": "workers.pull"}  # fmt: skip
    assert 0 < holder["expires_in_seconds"] <= 30 and holder["epoch"] >= 1
    assert [p["holder"] for p in data["partitions"][:2]] == [None, None]
    assert data["partitions_held"] == 1
    assert "host-x:4242 workers.pull" in row and re.search(r"workers\.pull\s+[1-3]\ds\b", row)


def test_batches_in_flight_and_overdue_ones_are_shown(
    cli: Cli, one: str, kafka_bootstrap: str, redis_client: Any, key_prefix: str
) -> None:
    send_each(kafka_bootstrap, one, {0: 6})
    cli("offsets", "reset", "alarms", "--to", "earliest", "--yes")
    leases = RedisLeases(redis_client, Owner("host-x", 4242, "workers.pull"), ttl=30)
    [lease] = leases.acquire(space(key_prefix, one), [0]).leases
    fence = {0: Fence(lease.epoch, 1)}  # the reset above was generation 1
    ledger = RedisLedger(redis_client)
    ledger.record(space(key_prefix, one), leases.token, fence, [Slice(0, "a", 0, 2)], 0)
    ledger.record(space(key_prefix, one), leases.token, fence, [Slice(0, "b", 2, 5)], 600_000)

    data = show(cli)
    row = cli("offsets", "show", "alarms").stdout.splitlines()[2]  # after the two headings
    line = cli("lag", "alarms").stdout

    assert data["partitions"][0]["in_flight"] == {
        "batches": 2, "records": 5, "overdue": 1, "max_handoffs": 1, "max_starts": 0,
    }  # fmt: skip
    assert data["in_flight"] == {"batches": 2, "records": 5, "overdue": 1}
    assert (data["partitions"][0]["stored"], data["partitions"][0]["lag"]) == (0, 6)
    assert "2/5 (1 overdue)" in row
    assert "in flight 2 batches (5 records)" in line and "OVERDUE 1" in line
    assert "re-driven" not in line  # counters show once they are not zero
    redis_client.hset(space(key_prefix, one).key("stats"), mapping={"redriven": 3, "split": 1})
    counted = cli("lag", "alarms").stdout
    assert "re-driven 3, split 1" in counted


def test_offsets_reset_to_latest_an_offset_and_earliest(
    cli: Cli, one: str, kafka_bootstrap: str, redis_client: Any, key_prefix: str
) -> None:
    send_each(kafka_bootstrap, one, {0: 3, 1: 1})
    after = {}
    for target in ("latest", "2", "earliest"):
        result = cli("offsets", "reset", "alarms", "--to", target, "--yes")
        assert result.exit_code == 0 and result.stdout.endswith("reset 3 partition(s)\n")
        after[target] = stored(redis_client, key_prefix, one)

    assert after == {"latest": {0: 3, 1: 1, 2: 0}, "2": {0: 2, 1: 2, 2: 2},
                     "earliest": {0: 0, 1: 0, 2: 0}}  # fmt: skip
    assert stored(redis_client, key_prefix, one, "generations") == {0: 3, 1: 3, 2: 3}


def test_offsets_reset_to_a_time_stores_what_the_broker_says_for_that_time(
    cli: Cli, new_topic: TopicFactory, kafka_bootstrap: str, redis_client: Any, key_prefix: str
) -> None:
    topic = new_topic(2)
    cli.conf["workers_pipelines"] = {"alarms": pipeline(topic)}
    edges = []  # (before, sent, after) per group of 2 records per partition, 1.2 s apart
    for group in range(3):
        time.sleep(1.2 if group else 0)
        edges.append(
            (arrow.utcnow(), send_each(kafka_bootstrap, topic, {0: 2, 1: 2}), arrow.utcnow())
        )
    gap1 = edges[0][2] + (edges[1][0] - edges[0][2]) / 2
    gap2 = edges[1][2] + (edges[2][0] - edges[1][2]) / 2
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    expected = [{tp.partition: found.offset for tp, found in consumer.offsets_for_times(
        {TopicPartition(topic, p): int(t.float_timestamp * 1000) for p in (0, 1)}).items()}
        for t in (gap1, gap2)]  # fmt: skip
    consumer.close()
    tomorrow, yesterday = (arrow.now("+08:00").shift(days=d).format("YYYY-MM-DDTHH:mmZZ")
                           for d in (1, -1))  # fmt: skip

    def reset_to(target: str) -> dict[int, int]:
        assert cli("offsets", "reset", "alarms", "--to", target, "--yes").exit_code == 0
        return stored(redis_client, key_prefix, topic)

    assert reset_to(gap1.to("+08:00").isoformat()) == expected[0] == {0: 2, 1: 2}
    assert reset_to(f"@{int(gap2.float_timestamp * 1000)}") == expected[1] == {0: 4, 1: 4}
    assert reset_to("-1h") == {0: 0, 1: 0}
    assert reset_to(tomorrow) == {0: 6, 1: 6}  # after the last record: the log end
    assert reset_to(yesterday) == {0: 0, 1: 0}


def test_offsets_reset_of_one_partition_leaves_the_others_alone(
    cli: Cli, one: str, kafka_bootstrap: str, redis_client: Any, key_prefix: str
) -> None:
    send_each(kafka_bootstrap, one, {0: 2, 1: 2, 2: 2})
    cli("offsets", "reset", "alarms", "--to", "earliest", "--yes")

    result = cli("offsets", "reset", "alarms", "--to", "latest", "--partition", "1", "--yes")

    assert result.stdout.splitlines()[1:3] == ["partition  before  after  change",
                                               "        1       0      2  skips 2"]  # fmt: skip
    assert stored(redis_client, key_prefix, one) == {0: 0, 1: 2, 2: 0}
    assert stored(redis_client, key_prefix, one, "generations") == {0: 1, 1: 2, 2: 1}


def test_offsets_reset_changes_nothing_on_a_dry_run_or_a_no(
    cli: Cli, one: str, kafka_bootstrap: str, redis_client: Any, key_prefix: str
) -> None:
    send_each(kafka_bootstrap, one, {0: 2})
    cli("offsets", "reset", "alarms", "--to", "earliest", "--yes")
    keys = [space(key_prefix, one).key(kind) for kind in ("offsets", "generations")]
    before = [redis_client.dump(k) for k in keys]
    reset = ("offsets", "reset", "alarms", "--to", "latest")

    dry = cli(*reset, "--dry-run")
    after_dry = [redis_client.dump(k) for k in keys]
    no = cli(*reset, input="n\n")
    after_no = [redis_client.dump(k) for k in keys]
    yes = cli(*reset, input="y\n")

    assert dry.exit_code == 0 and dry.stdout.splitlines()[-1] == "dry run: nothing changed"
    assert "        0       0      2  skips 2" in dry.stdout
    assert after_dry == before and after_no == before and None not in before
    assert no.exit_code == 1 and "Reset 3 partition(s) to latest? [y/N]" in no.stdout
    assert yes.exit_code == 0 and stored(redis_client, key_prefix, one) == {0: 2, 1: 0, 2: 0}


def test_offsets_reset_refuses_bad_targets_partitions_and_pipelines(
    cli: Cli, one: str, redis_client: Any, key_prefix: str
) -> None:
    bad_to = cli("offsets", "reset", "alarms", "--to", "soonish", "--yes")
    bad_partition = cli(
        "offsets", "reset", "alarms", "--to", "earliest", "--partition", "7", "--yes"
    )
    unknown = cli("offsets", "reset", "nope", "--to", "earliest", "--yes")

    assert (
        bad_to.exit_code == 2
        and "Invalid value for '--to': 'soonish' is not a point in time" in bad_to.stderr
    )
    assert bad_partition.exit_code == 2 and "Invalid value for --partition" in bad_partition.stderr
    assert unknown.exit_code == 1
    assert unknown.stderr == "Error: unknown pipeline 'nope'; known: ['alarms']\n"
    assert stored(redis_client, key_prefix, one) == {}


def test_offsets_reset_refuses_the_commit_of_a_pull_that_read_before_it(
    cli: Cli, one: str, kafka_bootstrap: str, redis_client: Any, key_prefix: str
) -> None:
    send_each(kafka_bootstrap, one, {0: 3})
    cli("offsets", "reset", "alarms", "--to", "earliest", "--yes")
    store, where = RedisOffsetStore(redis_client), space(key_prefix, one)
    leases = RedisLeases(redis_client, Owner.current("workers.pull"), ttl=30)
    lease = leases.acquire(where, [0]).leases[0]
    read = store.read(where, [0])[0]  # the pull read its position, then the operator resets

    result = cli("offsets", "reset", "alarms", "--to", "latest", "--yes")
    late = store.commit(where, leases.token, [Checkpoint(0, 1, lease.epoch, read.generation)])

    assert "1 of these partitions are being read now; the reset wins" in result.stdout
    assert late[0].status == "reset"
    assert stored(redis_client, key_prefix, one)[0] == 3


def test_offsets_show_json_lists_a_pipeline_it_cannot_read_among_its_errors(
    cli: Cli, one: str
) -> None:
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    cli.conf["workers_pipelines"]["gone"] = pipeline(missing)

    every = cli("offsets", "show", "--json")
    named = cli("offsets", "show", "gone", "--json")

    doc = json.loads(every.stdout)
    assert every.exit_code == 1 and doc["ok"] is False
    assert [p["pipeline"] for p in doc["pipelines"]] == ["alarms"]
    assert [e["pipeline"] for e in doc["errors"]] == ["gone"]
    assert "does not exist on cluster 'test'" in doc["errors"][0]["error"]
    assert every.stderr.startswith(f"error: topic {missing!r} does not exist")
    assert named.exit_code == 1 and named.stdout == ""  # a named pipeline: a failure
    assert named.stderr.startswith(f"Error: topic {missing!r} does not exist")


RESET_KEYS = {"ok", "pipeline", "cluster", "topic", "group", "method", "target", "time_ms",
              "dry_run", "partitions"}  # fmt: skip


def test_offsets_reset_json_reports_before_and_after_and_asks_on_stderr(
    cli: Cli, one: str, kafka_bootstrap: str, redis_client: Any, key_prefix: str
) -> None:
    send_each(kafka_bootstrap, one, {0: 3, 1: 1})
    leases = RedisLeases(redis_client, Owner("host-x", 4242, "workers.pull"), ttl=30)
    reset = ("offsets", "reset", "alarms", "--json")

    dry = cli(*reset, "--to", "earliest", "--dry-run")
    first = cli(*reset, "--to", "earliest", "--yes")
    leases.acquire(space(key_prefix, one), [1])
    asked = cli(*reset, "--to", "latest", "--partition", "0", "--partition", "1", input="y\n")
    declined = cli(*reset, "--to", "earliest", input="n\n")

    docs = [json.loads(x.stdout) for x in (dry, first, asked)]
    assert all(set(d) == RESET_KEYS and d["ok"] is True for d in docs)
    assert [(d["method"], d["target"], d["time_ms"], d["dry_run"]) for d in docs] == [
        ("to", "earliest", None, True), ("to", "earliest", None, False),
        ("to", "latest", None, False),
    ]  # fmt: skip
    rows = [[(p["partition"], p["before"], p["after"]) for p in d["partitions"]] for d in docs]
    assert rows == [
        [(0, None, 0), (1, None, 0), (2, None, 0)],
        [(0, None, 0), (1, None, 0), (2, None, 0)],
        [(0, 0, 3), (1, 0, 1)],
    ]
    edges = [(p["log_start"], p["log_end"], p["outside_log"], p["clamped"], p["held"])
             for p in docs[2]["partitions"]]  # fmt: skip
    assert edges == [(0, 3, False, False, False), (0, 1, False, False, True)]
    assert "Reset 2 partition(s) to latest? [y/N]" in asked.stderr
    assert "partition  before  after  change" in asked.stderr
    assert "reset 2 partition(s)" in asked.stderr
    assert "dry run: nothing changed" in dry.stderr
    assert declined.exit_code == 1 and declined.stdout == ""  # "no": nothing on stdout
    assert stored(redis_client, key_prefix, one) == {0: 3, 1: 1, 2: 0}
