"""Pulls that keep failing back off and log once per kind of failure, not once per cycle."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from celery import Celery

import workers.pulling.tasks
from tests.unit.fakes import ManualClock
from workers.exceptions import ConfigError, RecoverableError
from workers.pulling.cycle import Summary
from workers.pulling.failures import MAX_BACKOFF, SUMMARY_EVERY, Failures, kind_of
from workers.pulling.puller import TopicMissing


def caused(error: BaseException, cause: BaseException) -> BaseException:
    error.__cause__ = cause
    return error


def test_the_kind_of_a_failure_is_its_type_and_its_causes_type() -> None:
    assert kind_of(RecoverableError("x")) == "RecoverableError"
    assert kind_of(caused(RecoverableError("x"), ConnectionError())) == (
        "RecoverableError from ConnectionError"
    )


def test_backoff_doubles_up_to_a_minute_and_ends_at_the_first_success() -> None:
    clock = ManualClock()
    failures = Failures(clock)
    waits = []
    for _ in range(9):
        failures.failed("p", RecoverableError("down"))
        waits.append(failures.waiting("p"))
    failures.succeeded("p")

    assert waits == [1, 2, 4, 8, 16, 32, MAX_BACKOFF, MAX_BACKOFF, MAX_BACKOFF]
    assert failures.waiting("p") == 0
    assert failures.waiting("other") == 0


def test_each_kind_is_first_once_and_repeats_are_summed_up_rarely(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    failures = Failures(clock)
    down = caused(RecoverableError("redis down"), ConnectionError())

    with caplog.at_level(logging.DEBUG, logger="workers.pulling.failures"):
        firsts = [failures.failed("p", down) for _ in range(50)]
        other = failures.failed("p", TopicMissing("gone"))
        clock.advance(SUMMARY_EVERY)
        later = failures.failed("p", down)
        failures.succeeded("p")

    assert (firsts.count(True), firsts[0], other, later) == (1, True, True, False)
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(loud) == 2  # one summary after SUMMARY_EVERY, one recovery
    assert "still failing (52 failures" in loud[0] and "redis down" in loud[0]
    assert "pulls work again after 52 failures" in loud[1]


# -- the pull task ------------------------------------------------------------------------------


@pytest.fixture
def app() -> Celery:
    app = Celery("t", set_as_current=False)
    app.conf.task_always_eager = False
    app.finalize()
    return app


def test_a_failing_pull_raises_once_then_returns_quietly_then_backs_off(
    app: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}

    class Boom:
        def __enter__(self) -> Any:
            calls["n"] += 1
            raise TopicMissing("topic 'x' does not exist")

        def __exit__(self, *exc: Any) -> None:
            return None

    monkeypatch.setattr(workers.pulling.tasks, "pulling", lambda *a, **k: Boom())
    clock = ManualClock()
    monkeypatch.setattr(workers.pulling.tasks.PULL_FAILURES, "clock", clock)
    task = app.tasks["workers.pull"]

    with pytest.raises(TopicMissing):
        task.run("alarms")
    backing_off = task.run("alarms")
    clock.advance(10)
    quiet = task.run("alarms")

    assert backing_off == {"pipeline": "alarms", "stopped_by": "backoff", "retry_in": 1.0}
    assert quiet == {
        "pipeline": "alarms",
        "stopped_by": "failing",
        "error": "topic 'x' does not exist",
    }
    assert calls["n"] == 2  # the backoff did not even try


def test_a_setting_error_is_never_swallowed(app: Celery, monkeypatch: pytest.MonkeyPatch) -> None:
    class Bad:
        def __enter__(self) -> Any:
            raise ConfigError("workers_pipelines.alarms.topic", "", "a topic")

        def __exit__(self, *exc: Any) -> None:
            return None

    monkeypatch.setattr(workers.pulling.tasks, "pulling", lambda *a, **k: Bad())
    task = app.tasks["workers.pull"]

    for _ in range(3):
        with pytest.raises(ConfigError):
            task.run("alarms")


def test_a_pull_that_works_again_clears_the_backoff(
    app: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Works:
        def __enter__(self) -> Any:
            return object()

        def __exit__(self, *exc: Any) -> None:
            return None

    monkeypatch.setattr(workers.pulling.tasks, "pulling", lambda *a, **k: Works())
    monkeypatch.setattr(workers.pulling.tasks, "run_cycle", lambda app, puller: Summary("alarms"))
    workers.pulling.tasks.PULL_FAILURES.failed("alarms", RecoverableError("down"))
    clock = ManualClock(workers.pulling.tasks.PULL_FAILURES.clock() + 5)
    monkeypatch.setattr(workers.pulling.tasks.PULL_FAILURES, "clock", clock)

    result = app.tasks["workers.pull"].run("alarms")

    assert result["stopped_by"] == "" and workers.pulling.tasks.PULL_FAILURES.waiting("alarms") == 0
