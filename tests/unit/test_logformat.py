"""Log lines name their task and the records they are about: ``task_name[task_id]:`` in text,
one ASCII JSON object per line in JSON; secrets masked in both."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from celery.app.log import TaskFormatter

from tests.unit.config_support import base_conf
from workers.config import load_settings
from workers.exceptions import ConfigError
from workers.runtime.logformat import (
    JsonFormatter,
    TaskContext,
    TaskPrefix,
    at,
    install,
    log_context,
    slices_context,
)
from workers.runtime.logmask import MaskSecrets
from workers.state.ledger import Slice

FORMAT = "%(levelname)s %(message)s"


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    """A logger of its own whose one handler writes to a string."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(FORMAT))
    logger = logging.getLogger(f"test.logformat.{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, stream, handler
    logger.removeHandler(handler)


@pytest.fixture
def app() -> Celery:
    return Celery("logformat-test", set_as_current=False, broker="memory://")


def _in_task(app: Celery, logger: logging.Logger, task_id: str, name: str = "t.logs") -> None:
    """Run a task (eagerly: Celery's tracer, its task stack) that logs through ``logger``."""

    @app.task(name=name, shared=False)
    def logs() -> None:
        logger.warning("inside %s", "the task")

    logs.apply(task_id=task_id)


def test_text_lines_logged_in_a_task_start_with_its_name_and_id(logged, app) -> None:
    logger, stream, handler = logged
    install([handler], "text")

    _in_task(app, logger, "id-1")
    logger.warning("outside")

    assert stream.getvalue().splitlines() == ["WARNING t.logs[id-1]: inside the task",
                                              "WARNING outside"]  # fmt: skip


def test_text_lines_of_celery_itself_and_of_its_task_formatter_get_no_second_prefix(
    logged, app
) -> None:
    logger, stream, handler = logged
    task_handler = logging.StreamHandler(task_stream := io.StringIO())
    task_handler.setFormatter(
        TaskFormatter("%(task_name)s[%(task_id)s]: %(message)s", use_color=False)
    )
    install([handler, task_handler], "text")
    celery_logger = logging.getLogger("celery.worker.test")
    celery_logger.addHandler(handler)
    logger.addHandler(task_handler)

    try:

        @app.task(name="t.celery", shared=False)
        def logs() -> None:
            celery_logger.warning("from celery")
            logger.warning("to both")

        logs.apply(task_id="id-2")
    finally:
        celery_logger.removeHandler(handler)
        logger.removeHandler(task_handler)

    assert "WARNING from celery" in stream.getvalue().splitlines()
    assert task_stream.getvalue().splitlines() == ["t.celery[id-2]: to both"]
    assert isinstance(task_handler.formatter, TaskFormatter)


def test_install_is_idempotent(logged) -> None:
    _, _, handler = logged

    install([handler], "text")
    install([handler], "text")

    assert isinstance(handler.formatter, TaskPrefix)
    assert not isinstance(handler.formatter.inner, TaskPrefix)
    assert sum(isinstance(f, TaskContext) for f in handler.filters) == 1


def test_json_lines_carry_task_pipeline_topic_partition_and_offsets(logged, app) -> None:
    logger, stream, handler = logged
    install([handler], "json")

    with log_context(pipeline="events", topic="alarms", partition=None):
        _in_task(app, logger, "id-3")
        logger.warning("dead letter", extra=at(4, 17))
    logger.info("plain")

    inside, letter, plain = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["message"] == "inside the task" and inside["level"] == "WARNING"
    assert inside["task_name"] == "t.logs" and inside["task_id"] == "id-3"
    assert inside["pipeline"] == "events" and inside["topic"] == "alarms"
    assert "partition" not in inside  # None values are left out
    assert letter["partition"] == 4 and letter["offsets"] == {"4": [17, 17]}
    assert "task_id" not in letter and "pipeline" in letter
    assert set(plain) == {"time", "level", "logger", "process", "message"}
    assert plain["time"].endswith("+00:00")


def test_a_call_s_extra_wins_over_the_context_and_contexts_nest(logged) -> None:
    logger, stream, handler = logged
    install([handler], "json")

    with log_context(pipeline="outer", partition=1), log_context(topic="t"):
        logger.warning("x", extra={"partition": 2})
    [line] = (json.loads(raw) for raw in stream.getvalue().splitlines())

    assert (line["pipeline"], line["topic"], line["partition"]) == ("outer", "t", 2)


def test_a_json_line_is_one_ascii_line_whatever_the_message(logged) -> None:
    logger, stream, handler = logged
    install([handler], "json")
    text = "two\nlines, é, \udc80 and \u2028"

    logger.warning("%s", text)
    out = stream.getvalue()

    assert out.count("\n") == 1 and out.isascii()
    assert json.loads(out)["message"] == text


def test_json_exception_is_its_traceback_with_secrets_masked(logged) -> None:
    logger, stream, handler = logged
    handler.addFilter(MaskSecrets({"pa55word"}))
    install([handler], "json")

    try:
        raise ValueError("login with pa55word refused")
    except ValueError:
        logger.exception("connecting to redis://:pa55word@h:6379 failed")
    [line] = (json.loads(raw) for raw in stream.getvalue().splitlines())

    assert "pa55word" not in stream.getvalue()
    assert line["message"] == "connecting to redis://:***@h:6379 failed"
    assert (
        line["exception"].startswith("Traceback")
        and "ValueError: login with *** refused" in (line["exception"])
    )


def test_text_prefix_keeps_the_record_for_other_handlers(logged, app) -> None:
    logger, stream, handler = logged
    plain = logging.StreamHandler(plain_stream := io.StringIO())
    plain.setFormatter(logging.Formatter(FORMAT))
    plain.addFilter(TaskContext())
    logger.addHandler(plain)
    install([handler], "text")

    try:
        _in_task(app, logger, "id-4")
    finally:
        logger.removeHandler(plain)

    assert plain_stream.getvalue() == "WARNING inside the task\n"
    assert stream.getvalue() == "WARNING t.logs[id-4]: inside the task\n"


def test_slices_context_spans_each_partition_s_offsets() -> None:
    one = slices_context([Slice(3, "b1", 10, 20), Slice(3, "b2", 20, 25)])
    two = slices_context([Slice(0, "b1", 0, 5), Slice(1, "b2", 7, 9)])

    assert one == {"partition": 3, "offsets": {3: [10, 24]}}
    assert two == {"partition": None, "offsets": {0: [0, 4], 1: [7, 8]}}


def test_at_is_one_offset_or_a_range() -> None:
    assert at(2) == {"partition": 2}
    assert at(2, 5) == {"partition": 2, "offsets": {2: [5, 5]}}
    assert at(2, 5, 9) == {"partition": 2, "offsets": {2: [5, 9]}}


@pytest.mark.parametrize("value", ["text", "json"])
def test_the_setting_takes_text_or_json(value: str) -> None:
    assert (
        load_settings({**base_conf(), "workers_log_format": value}, environ={}).log_format == value
    )


@pytest.mark.parametrize("raw", ["xml", "JSON ", 1, None])
def test_another_log_format_is_a_one_line_error_naming_the_key(raw: Any) -> None:
    with pytest.raises(ConfigError, match="workers_log_format") as info:
        load_settings({**base_conf(), "workers_log_format": raw}, environ={})

    assert "\n" not in str(info.value)


def test_the_variable_sets_the_format() -> None:
    settings = load_settings(base_conf(), environ={"WORKERS_LOG_FORMAT": "json"})

    assert settings.log_format == "json"


def test_json_formatter_alone_needs_no_context_filter() -> None:
    record = logging.LogRecord("n", logging.INFO, __file__, 1, "m %d", (1,), None)

    assert json.loads(JsonFormatter().format(record))["message"] == "m 1"
