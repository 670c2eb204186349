"""Hostile arguments, config modules and settings against the real Redis and broker: each ends
in one line on stderr (``Error: ...``) naming the option or key and what is accepted, with exit
code 2 for a bad argument and 1 for anything else; never a traceback, never a hang.

Commands run in-process (``cli`` fixture: an exception other than SystemExit fails the test)
or, where the config module itself is the problem, in a child process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer

from tests.integration.cli_support import Cli, pipeline, run_command, write_module
from tests.integration.conftest import TopicFactory

pytestmark = pytest.mark.integration

HUGE = str(10**400)
TIME_FORMS = "use ISO 8601 (2026-11-24T10:00+08:00), epoch seconds or milliseconds"


def only_line(stderr: str) -> str:
    """The one line of ``stderr``: ``Error: ...``, no traceback."""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: ") and "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def topic(cli: Cli, new_topic: TopicFactory) -> str:
    """Pipeline ``p`` on a fresh 2-partition topic (and its dead-letter topic)."""
    name = new_topic(2)
    new_topic(1, name=f"{name}.dlq")
    cli.conf["workers_pipelines"] = {"p": pipeline(name)}
    return name


def usage(name: str, *args: str, says: str) -> Any:
    return pytest.param(args, says, id=name)


RESET = ("offsets", "reset", "p", "--yes", "--to")
BAD_ARGUMENTS = [
    usage("to-absurd-relative", *RESET, "-99999999999d",
          says="Invalid value for '--to': '-99999999999d' is before the epoch (1970-01-01)"),
    usage("to-absurd-epoch", *RESET, "@1e30",
          says=f"Invalid value for '--to': '1e30' is not a point in time; {TIME_FORMS}"),
    usage("to-year-99999", *RESET, "99999-01-01",
          says=f"Invalid value for '--to': '99999-01-01' is not a point in time; {TIME_FORMS}"),
    usage("to-before-1970", *RESET, "1969-07-20T20:17:00Z",
          says="'1969-07-20T20:17:00Z' is before the epoch (1970-01-01): times must fall "
               "between 1970-01-01 and 9999-12-31 UTC"),
    usage("to-offset-10**30", *RESET, "1" + "0" * 30,
          says=f"'1{'0' * 30}' is beyond the largest Kafka offset, 9223372036854775807 "
               "(offsets are signed 64-bit)"),
    usage("to-offset-10**400", *RESET, HUGE,
          says=f"'1{'0' * 199}'… (401 characters) is beyond the largest Kafka offset"),
    usage("to-offset-2**63", *RESET, str(2**63),
          says="'9223372036854775808' is beyond the largest Kafka offset, 9223372036854775807"),
    usage("to-negative-offset", *RESET, "-5",
          says="'-5' is a negative offset: offsets start at 0 (for a time before now, give a "
               "unit: -5m, -2h, -1d)"),
    usage("to-trailing-newline", *RESET, "-1h\n",
          says=f"Invalid value for '--to': '-1h\\n' is not a point in time; {TIME_FORMS}"),
    usage("to-unicode-digit", *RESET, "٣",
          says=f"Invalid value for '--to': '٣' is not a point in time; {TIME_FORMS}"),
    usage("partition-huge", "offsets", "reset", "p", "--to", "earliest", "--partition", HUGE,
          says=f"Invalid value for '--partition': '1{'0' * 199}'… (401 characters) is not an "
               "integer between 0 and 2147483647"),
    usage("partition-beyond-int32", "offsets", "reset", "p", "--to", "earliest", "--partition",
          str(2**31), says="'2147483648' is not an integer between 0 and 2147483647"),
    usage("partition-unknown", "offsets", "reset", "p", "--to", "earliest", "--partition", "7",
          says="Invalid value for --partition: no partition 7 in"),
    usage("timeout-nan", "--timeout", "nan", "check",
          says="Invalid value for '--timeout': 'nan' is not a number between 0.5 and 300"),
    usage("timeout-inf", "--timeout", "inf", "check",
          says="Invalid value for '--timeout': 'inf' is not a number between 0.5 and 300"),
    usage("timeout-1e400", "--timeout", "1e400", "lag",
          says="Invalid value for '--timeout': '1e400' is not a number between 0.5 and 300"),
    usage("timeout-negative", "--timeout", "-1", "check",
          says="Invalid value for '--timeout': '-1' is not a number between 0.5 and 300"),
    usage("timeout-unicode-digits", "--timeout", "١٠", "check",
          says="Invalid value for '--timeout': '١٠' is not a number between 0.5 and 300"),
    usage("lag-interval-nan", "lag", "--watch", "--interval", "nan",
          says="Invalid value for '--interval': 'nan' is not a number between 0.5 and 86400"),
    usage("produce-topic-with-space", "produce", "bad topic!",
          says="Invalid value for 'TOPIC': 'bad topic!' is not a Kafka topic name: 1-249 of "
               "[A-Za-z0-9._-], not '.' or '..'"),
    usage("produce-topic-250-chars", "produce", "t" * 250,
          says=f"Invalid value for 'TOPIC': '{'t' * 200}'… (250 characters) is not a Kafka "
               "topic name"),
    usage("produce-topic-dotdot", "produce", "..",
          says="Invalid value for 'TOPIC': '..' is not a Kafka topic name"),
    usage("produce-topic-newline", "produce", "alarms\n",
          says="Invalid value for 'TOPIC': 'alarms\\n' is not a Kafka topic name"),
    usage("produce-file-nul", "produce", "t", "--file", "a\0b",
          says="Invalid value for --file: cannot open 'a\\x00b': embedded null byte"),
    usage("topics-partitions-huge", "topics", "create", "--partitions", str(2**31),
          says="Invalid value for '--partitions': '2147483648' is not an integer between 1 and "
               "2147483647"),
    usage("topics-replication-beyond-int16", "topics", "create", "--replication-factor",
          "32768", says="'32768' is not an integer between 1 and 32767"),
    usage("dlq-limit-zero", "dlq", "show", "p", "--limit", "0",
          says="Invalid value for '--limit': '0' is not an integer between 1 and 2147483647"),
    usage("dlq-limit-huge", "dlq", "replay", "p", "--limit", HUGE,
          says="Invalid value for '--limit': '1000"),
    usage("config-not-a-module-name", "--config", "../celeryconfig", "check",
          says="Invalid value for '--config' (env var: 'CELERY_CONFIG_MODULE', "
               "'WORKERS_CELERY_CONFIG'): '../celeryconfig' is not a Python module name"),
    usage("app-without-module", "--app", ":app", "check",
          says="Invalid value for '-A' / '--app' (env var: 'WORKERS_APP'): ':app' is not "
               "module:attribute"),
    usage("demo-duration-inf", "demo", "--duration", "inf",
          says="Invalid value for '--duration': 'inf' is not a number between 1 and 1000000"),
    usage("unknown-command", "frobnicate", says="No such command 'frobnicate'"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "says"), BAD_ARGUMENTS)
def test_a_bad_argument_is_one_usage_line_with_exit_code_2(
    cli: Cli, topic: str, args: tuple[str, ...], says: str
) -> None:
    # Act
    result = cli(*args)

    # Assert
    line = only_line(result.stderr)
    assert says in line
    assert result.exit_code == 2
    assert len(line) < 600  # every echoed value capped


@pytest.mark.parametrize(
    ("name", "args", "says"),
    [
        ("unknown-pipeline-long-name", ("offsets", "show", "x" * 10_000),
         f"Error: unknown pipeline '{'x' * 200}'… (10000 characters); known: ['p']"),
        ("unknown-cluster", ("produce", "t", "--cluster", "no\x1bpe"),
         "Error: unknown Kafka cluster 'no\\x1bpe'; known: ['test']"),
    ],
)  # fmt: skip
def test_a_name_the_configuration_lacks_is_one_line_with_exit_code_1(
    cli: Cli, topic: str, name: str, args: tuple[str, ...], says: str
) -> None:
    # Act
    result = cli(*args, input="{}\n")

    # Assert
    assert only_line(result.stderr).startswith(says)
    assert result.exit_code == 1


# -- config modules that cannot be loaded ----------------------------------------------------------

SECRET = "s3cr3t-Kq7vZ"
BROKEN = {
    "syntax-error": ("def broken(:\n", "SyntaxError: invalid syntax ({name}.py, line 1)"),
    "import-error": (
        "import no_such_module_xyz\n",
        "ModuleNotFoundError: No module named 'no_such_module_xyz'",
    ),
    "raises": (
        f"raise RuntimeError('cannot reach redis://:{SECRET}@h:1/0\\nsecond line')\n",
        "RuntimeError: cannot reach redis://:***@h:1/0 second line",
    ),
    "exits": ("raise SystemExit(3)\n", "it called exit(3) on import"),
    "missing": (None, "ModuleNotFoundError: No module named '{name}'"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_config_module_that_cannot_load_is_one_line_naming_it(tmp_path: Path, case: str) -> None:
    # Arrange
    source, error = BROKEN[case]
    name = write_module(tmp_path, source) if source else "cliconf_missing"

    # Act
    ran = run_command(tmp_path, "--config", name, "check", timeout=60)

    # Assert
    assert ran.code == 1, ran.err
    assert only_line(ran.err) == (
        f"Error: cannot load the config module '{name}' "
        "(--config / CELERY_CONFIG_MODULE / WORKERS_CELERY_CONFIG): " + error.format(name=name)
    )
    assert ran.out == ""


# -- hostile settings reach the command as one line -----------------------------------------------


def test_a_hostile_setting_from_the_environment_is_one_line(
    cli: Cli, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange
    monkeypatch.setenv("WORKERS_PIPELINE_P_INTERVAL", "1e400")

    # Act
    shown = cli("offsets", "show", "p")
    checked = cli("check", "--json")

    # Assert
    expected = (
        "WORKERS_PIPELINE_P_INTERVAL: got '1e400'; expected seconds as a number between 0.1 "
        "and 86400"
    )
    assert only_line(shown.stderr) == f"Error: {expected}"
    assert json.loads(checked.stdout)["findings"] == [
        {"what": "settings", "level": "fail", "detail": expected, "hint": "settings wrong"}
    ]
    assert (shown.exit_code, checked.exit_code) == (1, 1)


def test_a_hostile_setting_in_the_config_is_one_capped_line(cli: Cli, topic: str) -> None:
    # Arrange
    cli.conf["workers_pipelines"]["p"]["max_queue_length"] = 10**400

    # Act
    result = cli("lag")

    # Assert
    assert only_line(result.stderr) == (
        f"Error: workers_pipelines.p.max_queue_length: got 1{'0' * 199}… (401 characters); "
        "expected a value between 1 and 2147483647"
    )
    assert result.exit_code == 1


# -- produce ---------------------------------------------------------------------------------------


def test_produce_reports_a_line_nested_too_deep_and_sends_the_rest(
    cli: Cli, new_topic: TopicFactory, kafka_bootstrap: str, tmp_path: Path
) -> None:
    # Arrange
    name = new_topic(1)
    deep = "[" * 100_000 + "]" * 100_000
    source = tmp_path / "records.jsonl"
    source.write_text("\n".join(['{"n": 1}', deep, '{"n": NaN}', '{"n": 4}']) + "\n")

    # Act
    result = cli("produce", name, "--file", str(source))

    # Assert
    assert result.stdout == f"sent 2 record(s) to test/{name}\n"
    assert result.stderr.splitlines() == [
        "line 2: not JSON: nested too deeply",
        "line 3: not JSON: NaN is not a JSON value",
    ]
    assert result.exit_code == 1
    consumer = KafkaConsumer(name, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest")
    values = [r.value for batch in consumer.poll(timeout_ms=10_000).values() for r in batch]
    consumer.close()
    assert values == [b'{"n": 1}', b'{"n": 4}']
