"""``--json`` without services: each command's document has one shape whatever it found
(the builders of ``workers.cli.documents`` on plain data), the README lists every key, and
a command that fails prints nothing on stdout, one line on stderr, and its exit code. The
shapes filled by real Redis and Kafka are in tests/integration/test_cli*.py."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import arrow
import pytest
from celery import Celery
from click.testing import CliRunner, Result

from workers.cli import documents, main
from workers.cli.base import EXIT_FAILED, EXIT_UNAVAILABLE, EXIT_USAGE
from workers.config import PipelineConfig, load_settings
from workers.ops.check import Finding
from workers.ops.dlq import Letter, Replay
from workers.ops.fmt import to_json
from workers.ops.pace import Pace
from workers.ops.produce import RECORDS_LISTED, Produced
from workers.ops.resets import Target
from workers.ops.status import Flight, PartitionStatus, PipelineStatus
from workers.ops.topics import Created
from workers.pulling.positions import ResetRow
from workers.state.brake import Trip
from workers.state.leases import Holder

README = Path(__file__).resolve().parents[2] / "README.md"
# Nothing listens on port 1: a command that reached for a service would fail, not hang.
NOWHERE = "127.0.0.1:1"
CONF = {
    "broker_url": f"redis://{NOWHERE}/0",
    "workers_redis_url": f"redis://{NOWHERE}/0",
    "workers_kafka_clusters": {"test": {"bootstrap_servers": [NOWHERE]}},
    "workers_pipelines": {"p": {"cluster": "test", "topic": "t", "tasks": ["x.parse"]}},
}
APP = Celery("cli-json-test", set_as_current=False)
APP.conf.update(CONF)
EMPTY = Celery("cli-json-empty", set_as_current=False)
EMPTY.conf.update({**CONF, "workers_pipelines": {}})


def run(*args: str, app: str = "APP", input: str | None = None) -> Result:
    result = CliRunner().invoke(main, ["--app", f"{__name__}:{app}", *args], input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def config() -> PipelineConfig:
    return load_settings(CONF, environ={}).pipeline("p")


def status(lag: int | None = 5, holder: bool = True) -> PipelineStatus:
    held = Holder(0, "tok", 3, "host-x", 42, "workers.pull", 1_000, 12.34) if holder else None
    part = PartitionStatus(0, 5, 0, 10, lag, 9_000, held, 0, Flight(1, 2, 0, 1, 0))
    counters = {"records": 7, "last_ms": 8_000}
    return PipelineStatus(config(), [part], counters, now_ms=10_000)


def letter(partition: int, offset: int, dropped: int | None = None) -> Letter:
    value = None if dropped else b"oops"
    return Letter(partition, offset, 1_700_000_000_000, f"value is not valid JSON ({offset})",
                  f"test/t/0/{offset}", b"k", value, (), dropped)  # fmt: skip


def keys(command: str) -> set[str]:
    return set(documents.KEYS[command])


# -- shapes --------------------------------------------------------------------------------------


def test_check_document() -> None:
    doc = documents.check([Finding("redis x", "ok", "Redis 7"), Finding("t", "fail", "gone", "h")])

    assert set(doc) == keys("check") and doc["ok"] is False
    assert doc["findings"][1] == {"what": "t", "level": "fail", "detail": "gone", "hint": "h"}


def test_topics_create_document_lists_each_topic_with_its_status() -> None:
    results = [Created("test", "t", "created", "2 partitions, replication factor 1", "reads it"),
               Created("test", "t.dlq", "failed", "no room", "dead letters")]  # fmt: skip

    doc = documents.topics_create(results, 2, 1, dry_run=False)

    assert set(doc) == keys("topics create") and doc["ok"] is False
    assert (doc["partitions"], doc["replication_factor"], doc["dry_run"]) == (2, 1, False)
    assert doc["topics"] == [
        {"cluster": "test", "topic": "t", "status": "created", "why": "reads it", "error": None},
        {"cluster": "test", "topic": "t.dlq", "status": "failed", "why": "dead letters",
         "error": "no room"},
    ]  # fmt: skip


@pytest.mark.parametrize("rows", [[], [("p", "boom")], [("p", status())]], ids=str)
def test_offsets_show_document_is_one_object_whatever_it_found(rows: list[Any]) -> None:
    doc = documents.offsets_show(rows)

    assert set(doc) == keys("offsets show")
    assert doc["ok"] is not any(isinstance(r, str) for _, r in rows)
    assert all(set(e) == set(documents.ERROR_KEYS) for e in doc["errors"])


def test_offsets_show_pipeline_keeps_its_partitions() -> None:
    doc = documents.offsets_show([("p", status()), ("q", "unknown pipeline 'q'")])

    [pipeline] = doc["pipelines"]
    assert pipeline["pipeline"] == "p" and pipeline["lag"] == 5
    assert pipeline["partitions"][0]["holder"]["expires_in_seconds"] == 12.3
    assert doc["errors"] == [{"pipeline": "q", "error": "unknown pipeline 'q'"}]


def test_lag_document_has_one_summary_per_pipeline() -> None:
    doc = documents.lag([("p", status()), ("q", "boom")], {"p": Pace(12.345, -2.5, 5)})

    assert set(doc) == keys("lag") and doc["ok"] is False and doc["time_ms"] > 0
    assert doc["pipelines"] == [{
        "pipeline": "p", "cluster": "test", "topic": "t", "group": "workers", "mode": "beat",
        "started": True, "start": "latest", "lag": 5, "oldest_unread_age_seconds": 1.0,
        "partition_count": 1, "partitions_held": 1,
        "in_flight": {"batches": 1, "records": 2, "overdue": 0},
        "counters": {"records": 7, "last_ms": 8_000}, "brake": None,
        "last_pull_age_seconds": 2.0, "read_per_second": 12.3, "lag_change_per_second": -2.5,
        "catch_up_seconds": 2.0,
    }]  # fmt: skip
    assert doc["errors"] == [{"pipeline": "q", "error": "boom"}]


TRIP = Trip(9_000, "ratio", "pull", 0.75, 12, 800, 600)
TRIPPED = {"tripped_ms": 9_000, "reason": "ratio", "source": "pull", "ratio": 0.75,
           "consecutive": 12, "window_records": 800, "window_dead_letters": 600}  # fmt: skip


def test_a_tripped_brake_shows_in_lag_and_offsets_show() -> None:
    row = replace(status(), brake=TRIP)

    [lagging] = documents.lag([("p", row)], {})["pipelines"]
    [shown] = documents.offsets_show([("p", row)])["pipelines"]

    assert lagging["brake"] == shown["brake"] == TRIPPED
    assert documents.offsets_show([("p", status())])["pipelines"][0]["brake"] is None


def test_dlq_resume_document_says_what_it_cleared() -> None:
    resumed = documents.dlq_resume(config(), TRIP)
    idle = documents.dlq_resume(config(), None)

    assert set(resumed) == set(idle) == keys("dlq resume")
    assert (resumed["resumed"], resumed["brake"]) == (True, TRIPPED)
    assert (idle["ok"], idle["resumed"], idle["brake"]) == (True, False, None)


def test_lag_document_without_a_rate_or_a_pull() -> None:
    row = status(holder=False)
    row.counters["last_ms"] = 0

    [pipeline] = documents.lag([("p", row)], {})["pipelines"]

    assert (pipeline["read_per_second"], pipeline["last_pull_age_seconds"]) == (None, None)
    assert (pipeline["lag_change_per_second"], pipeline["catch_up_seconds"]) == (None, None)
    assert pipeline["partitions_held"] == 0


def test_lag_document_of_a_lag_that_does_not_shrink_has_no_catch_up_time() -> None:
    [pipeline] = documents.lag([("p", status())], {"p": Pace(10.0, 4.0, 5)})["pipelines"]

    assert (pipeline["lag_change_per_second"], pipeline["catch_up_seconds"]) == (4.0, None)


def test_offsets_reset_document_has_before_and_after_per_partition() -> None:
    rows = [ResetRow(0, None, 4), ResetRow(1, 7, 12)]

    doc = documents.offsets_reset(config(), Target("to", "latest"), False, rows,
                                  {0: (0, 4), 1: (0, 9)}, {1})  # fmt: skip

    assert set(doc) == keys("offsets reset")
    assert (doc["pipeline"], doc["target"], doc["dry_run"], doc["ok"]) == ("p", "latest",
                                                                          False, True)  # fmt: skip
    assert (doc["method"], doc["time_ms"]) == ("to", None)
    assert doc["partitions"] == [
        {"partition": 0, "before": None, "after": 4, "log_start": 0, "log_end": 4,
         "outside_log": False, "clamped": False, "held": False},
        {"partition": 1, "before": 7, "after": 12, "log_start": 0, "log_end": 9,
         "outside_log": True, "clamped": False, "held": True},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("target", "method", "time_ms"),
    [(Target("shift_by", "-5", shift=-5), "shift_by", None),
     (Target("by_duration", "PT1H", when=arrow.get(1_700_000_000.5)), "by_duration",
      1_700_000_000_500),
     (Target("to_datetime", "2023-11-14T22:13:20Z", when=arrow.get(1_700_000_000)),
      "to_datetime", 1_700_000_000_000),
     (Target("from_file", "plan.csv", offsets={0: 1}), "from_file", None)],
)  # fmt: skip
def test_offsets_reset_document_names_the_method_and_the_time_it_looked_up(
    target: Target, method: str, time_ms: int | None
) -> None:
    rows = [ResetRow(0, 9, 0)]

    doc = documents.offsets_reset(config(), target, True, rows, {0: (0, 9)}, set(), frozenset({0}))

    assert (doc["method"], doc["target"], doc["time_ms"]) == (method, target.text, time_ms)
    assert doc["partitions"][0]["clamped"] is True


def test_produce_document_places_each_record_and_spans_each_partition() -> None:
    result = Produced(invalid=[(2, "not JSON: x")], without_key=1)
    for line, (partition, offset) in enumerate([(0, 5), (1, 0), (0, 6)], start=1):
        result.placed(line if line < 2 else line + 1, partition, offset)

    doc = documents.produce("test", "t", result)

    assert set(doc) == keys("produce")
    assert (doc["ok"], doc["sent"], doc["failed"], doc["first_failure"]) == (False, 3, 0, None)
    assert doc["invalid"] == [{"line": 2, "reason": "not JSON: x"}]
    assert doc["partitions"] == [
        {"partition": 0, "records": 2, "first_offset": 5, "last_offset": 6},
        {"partition": 1, "records": 1, "first_offset": 0, "last_offset": 0},
    ]
    assert doc["records"] == [{"line": 1, "partition": 0, "offset": 5},
                              {"line": 3, "partition": 1, "offset": 0},
                              {"line": 4, "partition": 0, "offset": 6}]  # fmt: skip
    assert doc["records_omitted"] == 0


def test_produce_document_lists_the_first_records_and_counts_the_rest() -> None:
    result = Produced()
    for n in range(RECORDS_LISTED + 5):
        result.placed(n + 1, 0, n)

    doc = documents.produce("test", "t", result)

    assert len(doc["records"]) == RECORDS_LISTED and doc["records_omitted"] == 5
    span = {"partition": 0, "records": RECORDS_LISTED + 5, "first_offset": 0,
            "last_offset": RECORDS_LISTED + 4}  # fmt: skip
    assert doc["partitions"] == [span]


def test_dlq_show_document_counts_reasons_and_lists_the_last_letters() -> None:
    letters = [letter(0, 1), letter(0, 2), letter(1, 3)]

    doc = documents.dlq_show(config(), letters, [True, False, False], limit=2)

    assert set(doc) == keys("dlq show")
    assert (doc["total"], doc["pending"], doc["dead_letter_topic"]) == (3, 2, "t.dlq")
    assert doc["reasons"] == [{"reason": f"value is not valid JSON ({n})", "count": 1}
                              for n in (1, 2, 3)]  # fmt: skip
    assert [(x["offset"], x["replayed"]) for x in doc["letters"]] == [(2, False), (3, False)]


@pytest.mark.parametrize("dry_run", [True, False])
def test_dlq_replay_document_lists_letters_and_positions(dry_run: bool) -> None:
    result = Replay([letter(0, 1), letter(1, 3)], [letter(1, 4, dropped=9_000)], {0: 2, 1: 5})

    doc = documents.dlq_replay(config(), result, dry_run)

    assert set(doc) == keys("dlq replay") and doc["dry_run"] is dry_run
    assert (doc["topic"], doc["dead_letter_topic"]) == ("t", "t.dlq")
    assert doc["letters"][0] == {"partition": 0, "offset": 1, "source": "test/t/0/1",
                                 "reason": "value is not valid JSON (1)",
                                 "value_dropped_bytes": None}  # fmt: skip
    assert doc["unreplayable"][0]["value_dropped_bytes"] == 9_000
    assert doc["positions"] == [{"partition": 0, "offset": 2}, {"partition": 1, "offset": 5}]


def test_every_document_starts_with_ok() -> None:
    assert all(names[0] == "ok" for names in documents.KEYS.values())


def test_documents_are_ascii_json_indented_or_on_one_line() -> None:
    doc = {"ok": True, "value": "ü €\n", "rows": [1, 2]}

    indented, compact = to_json(doc), to_json(doc, compact=True)

    assert json.loads(indented) == json.loads(compact) == doc
    assert indented.isascii() and compact.isascii()
    assert indented.startswith('{\n  "ok": true,') and "\n" not in compact


# -- the README ----------------------------------------------------------------------------------


def json_section() -> str:
    text = README.read_text()
    start = text.index("### JSON output")
    return text[start : text.index("\n### ", start + 1)]


@pytest.mark.parametrize("command", sorted(documents.KEYS))
def test_the_readme_explains_every_key_of_each_document(command: str) -> None:
    # Arrange: the block of one command runs from its heading to the next one
    blocks = re.split(r"^\*\*`workers ", json_section(), flags=re.M)
    block = [b for b in blocks if b.startswith(f"{command} ")]

    # Assert
    assert len(block) == 1, f"no block for workers {command}"
    missing = [key for key in documents.KEYS[command] if f"`{key}`" not in block[0]]
    assert missing == []


# -- failures under --json -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("offsets", "show", "nope"), EXIT_FAILED, "unknown pipeline 'nope'; known: ['p']"),
        (("offsets", "reset", "nope", "--to", "earliest", "--yes"), EXIT_FAILED,
         "unknown pipeline 'nope'"),
        (("offsets", "reset", "p", "--to", "soonish"), EXIT_USAGE,
         "Invalid value for '--to': 'soonish' is not a point in time"),
        (("dlq", "show", "nope"), EXIT_FAILED, "unknown pipeline 'nope'"),
        (("dlq", "replay", "nope", "--yes"), EXIT_FAILED, "unknown pipeline 'nope'"),
        (("produce", "t", "--cluster", "nope"), EXIT_FAILED, "unknown Kafka cluster 'nope'"),
        (("produce", "bad topic!"), EXIT_USAGE, "Invalid value for 'TOPIC'"),
        (("lag", "--interval", "0"), EXIT_USAGE, "Invalid value for '--interval'"),
        (("topics", "create", "--partitions", "0"), EXIT_USAGE,
         "Invalid value for '--partitions'"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else None,
)  # fmt: skip
def test_a_command_that_fails_prints_no_json_and_one_line_on_stderr(
    args: tuple[str, ...], code: int, says: str
) -> None:
    result = run(*args, "--json", input="")

    assert result.exit_code == code
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("Error: ")
    assert says in result.stderr


def test_an_app_that_does_not_load_prints_no_json() -> None:
    result = CliRunner().invoke(main, ["--app", "no_such_module_x:app", "check", "--json"])

    assert result.exit_code == EXIT_FAILED and result.stdout == ""
    assert result.stderr.startswith("Error: cannot load the Celery app 'no_such_module_x:app'")


def test_lag_lists_a_pipeline_it_cannot_read_among_the_errors_of_its_document() -> None:
    result = run("lag", "nope", "--json")

    assert result.exit_code == EXIT_FAILED
    assert json.loads(result.stdout) == {
        "ok": False, "time_ms": json.loads(result.stdout)["time_ms"], "pipelines": [],
        "errors": [{"pipeline": "nope", "error": "unknown pipeline 'nope'; known: ['p']"}],
    }  # fmt: skip
    assert result.stderr == "error: unknown pipeline 'nope'; known: ['p']\n"


@pytest.mark.parametrize(
    ("args", "expected"),
    [(("offsets", "show"), {"ok": True, "pipelines": [], "errors": []}),
     (("lag",), {"ok": True, "pipelines": [], "errors": []})],
)  # fmt: skip
def test_without_pipelines_the_document_keeps_its_shape(
    args: tuple[str, ...], expected: dict[str, Any]
) -> None:
    result = run(*args, "--json", app="EMPTY")

    doc = json.loads(result.stdout)
    doc.pop("time_ms", None)
    assert result.exit_code == 0 and doc == expected and result.stderr == ""


# -- demo ----------------------------------------------------------------------------------------


def test_demo_without_redis_server_exits_with_the_service_unavailable_code(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Arrange: no redis-server on the PATH, so nothing is started
    monkeypatch.setenv("PATH", str(tmp_path))

    # Act
    result = CliRunner().invoke(main, ["demo", "--duration", "1"])

    # Assert
    logs = re.search(r"logs kept in (\S+)", result.stdout)
    if logs and Path(logs.group(1)).name.startswith("workers-demo-"):
        shutil.rmtree(logs.group(1), ignore_errors=True)
    assert result.exit_code == EXIT_UNAVAILABLE != EXIT_USAGE, result.output
    assert "cannot run the demo: redis-server not found" in result.stdout
