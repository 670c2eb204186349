"""``workers offsets reset`` and ``workers lag --watch`` refuse options that cannot go together,
and values that are no target, in one line with exit code 2, before anything connects (the app
points at a port where nothing listens). The resets themselves run against real services in
tests/integration/test_cli_reset.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from celery import Celery
from click.testing import CliRunner, Result

from workers.cli import main
from workers.cli.base import EXIT_USAGE

NOWHERE = "127.0.0.1:1"
APP = Celery("cli-reset-options", set_as_current=False)
APP.conf.update({
    "broker_url": f"redis://{NOWHERE}/0",
    "workers_redis_url": f"redis://{NOWHERE}/0",
    "workers_kafka_clusters": {"test": {"bootstrap_servers": [NOWHERE]}},
    "workers_pipelines": {"p": {"cluster": "test", "topic": "t", "tasks": ["x.parse"]}},
})  # fmt: skip


def run(*args: str, input: str | None = None) -> Result:
    result = CliRunner().invoke(
        main, ["--app", f"{__name__}:APP", *args], input=input, prog_name="workers"
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


RESET = ("offsets", "reset", "p")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "Error: give a target: one of --to, --shift-by, --to-datetime, --by-duration, "
             "--from-file; see 'workers offsets reset --help'"),
        (("--to", "latest", "--shift-by", "-5"),
         "Error: --to and --shift-by cannot be used together; give one target"),
        (("--shift-by", "5", "--by-duration", "PT1H", "--to-datetime", "2026-11-24T10:00"),
         "Error: --shift-by and --to-datetime and --by-duration cannot be used together"),
        (("--from-file", "plan.csv", "--to", "earliest"),
         "Error: --to and --from-file cannot be used together"),
        (("--to", "latest", "--export", "--json"),
         "Error: --export and --json cannot be used together (both print on stdout)"),
        (("--from-file", "plan.csv", "--partition", "1"),
         "Error: --from-file and --partition cannot be used together (the plan names its "
         "partitions)"),
        (("--from-file", "-"),
         "Error: --from-file - reads the plan from stdin, where the question would be "
         "answered: add --yes or --dry-run"),
        (("--shift-by", "1.5"), "Error: Invalid value for '--shift-by': '1.5' is not an integer "
                                "between -9007199254740992 and 9007199254740992"),
        (("--shift-by", "9007199254740993"), "Invalid value for '--shift-by'"),
        (("--to-datetime", "2026-11-24"), "Error: Invalid value for '--to-datetime': "
                                          "'2026-11-24' is not a date-time; use YYYY-MM-DDTHH:mm"),
        (("--to-datetime", "2026-02-30T00:00"), "day is out of range for month"),
        (("--by-duration", "+1h"), "Error: Invalid value for '--by-duration': '+1h' points into "
                                   "the future"),
        (("--by-duration", "P1Y"), "years or months, which have no fixed length"),
        (("--by-duration", "soon"), "'soon' is not a duration"),
        (("--to", "soonish"), "Invalid value for '--to': 'soonish' is not a point in time"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else None,
)  # fmt: skip
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_bad_options_are_one_line_and_exit_code_2_before_connecting(
    args: tuple[str, ...], says: str, as_json: bool
) -> None:
    # Act
    result = run(*RESET, *args, *(["--json"] if as_json and "--json" not in args else []))

    # Assert
    assert result.exit_code == EXIT_USAGE
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and says in result.stderr


def test_a_plan_file_that_cannot_be_read_is_a_bad_argument(tmp_path: Path) -> None:
    missing = run(*RESET, "--from-file", str(tmp_path / "nope.csv"), "--yes")
    folder = run(*RESET, "--from-file", str(tmp_path), "--yes")
    binary = tmp_path / "plan.csv"
    binary.write_bytes(b"t,0,1\n\xff\n")
    not_text = run(*RESET, "--from-file", str(binary), "--yes")

    assert [r.exit_code for r in (missing, folder, not_text)] == [EXIT_USAGE] * 3
    assert "Invalid value for --from-file: cannot read" in missing.stderr
    assert "No such file or directory" in missing.stderr
    assert "Is a directory" in folder.stderr
    assert f"{binary} line 2: not UTF-8 text (byte 6)" in not_text.stderr


def test_lag_count_needs_watch() -> None:
    result = run("lag", "--count", "2")

    assert result.exit_code == EXIT_USAGE and result.stdout == ""
    assert result.stderr == "Error: --count needs --watch; see 'workers lag --help'\n"


@pytest.mark.parametrize("count", ["0", "-1", "x"])
def test_lag_count_is_a_positive_integer(count: str) -> None:
    result = run("lag", "--watch", "--count", count)

    assert result.exit_code == EXIT_USAGE
    assert "Invalid value for '--count'" in result.stderr
