"""The generated Beat schedule and ``setup(app)`` on fresh Celery apps (nothing connects)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from celery import Celery

from workers.config import load_settings
from workers.runtime.setup import beat_schedule, setup
from workers.runtime.shutdown import StopConsumers

# Variables the loader reads; removed from os.environ in tests that go through settings_for().
ENV_PREFIXES = ("WORKERS_", "KAFKA_", "ALERT_KAFKA_")


def pipeline(topic: str, **values: Any) -> dict[str, Any]:
    return {"cluster": "common", "topic": topic, "tasks": ["a.b"], **values}


def workers_conf(**pipelines: dict[str, Any]) -> dict[str, Any]:
    return {
        "workers_kafka_clusters": {"common": {"bootstrap_servers": ["127.0.0.1:9092"]}},
        "workers_pipelines": pipelines,
    }


def mixed_conf() -> dict[str, Any]:
    """Two beat pipelines (one below the expires floor) and one long-lived pipeline."""
    conf = workers_conf(
        alarms=pipeline("alarm-events", interval=2),
        metrics=pipeline("metric-events", interval=30),
        stream=pipeline("stream-events", mode="long_lived", concurrency=2),
    )
    conf["workers_supervise_interval"] = 15
    return conf


# What beat_schedule() makes of mixed_conf(): expires is 3 intervals, never below 10 s.
GENERATED: dict[str, Any] = {
    "workers.pull:alarms": {
        "task": "workers.pull",
        "schedule": 2.0,
        "args": ("alarms",),
        "options": {"expires": 10.0},
    },
    "workers.pull:metrics": {
        "task": "workers.pull",
        "schedule": 30.0,
        "args": ("metrics",),
        "options": {"expires": 90.0},
    },
    "workers.supervise": {
        "task": "workers.supervise",
        "schedule": 15.0,
        "options": {"expires": 15.0},
    },
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in list(os.environ):
        if var.startswith(ENV_PREFIXES):
            monkeypatch.delenv(var)


# -- beat_schedule -----------------------------------------------------------------------------


def test_beat_schedule_has_one_pull_per_beat_pipeline_and_one_supervise_entry() -> None:
    # Arrange
    settings = load_settings(mixed_conf(), environ={})

    # Act
    entries = beat_schedule(settings)

    # Assert
    assert entries == GENERATED


def test_beat_schedule_without_long_lived_pipelines_has_no_supervise_entry() -> None:
    # Arrange
    settings = load_settings(
        workers_conf(alarms=pipeline("alarm-events"), metrics=pipeline("metric-events")),
        environ={},
    )

    # Act
    entries = beat_schedule(settings)

    # Assert
    assert sorted(entries) == ["workers.pull:alarms", "workers.pull:metrics"]


def test_beat_schedule_with_only_long_lived_pipelines_has_only_supervise() -> None:
    # Arrange
    settings = load_settings(
        workers_conf(stream=pipeline("stream-events", mode="long_lived")), environ={}
    )

    # Act
    entries = beat_schedule(settings)

    # Assert
    assert entries == {
        "workers.supervise": {
            "task": "workers.supervise",
            "schedule": 10.0,
            "options": {"expires": 10.0},
        }
    }


def test_beat_schedule_without_pipelines_is_empty() -> None:
    # Arrange
    settings = load_settings(workers_conf(), environ={})

    # Act
    entries = beat_schedule(settings)

    # Assert
    assert entries == {}


@pytest.mark.parametrize(
    ("interval", "expires"),
    [(0.1, 10.0), (1, 10.0), (3.3, 10.0), (4, 12.0), (3600, 10800.0)],
)
def test_pull_expires_is_three_intervals_but_at_least_ten_seconds(
    interval: float, expires: float
) -> None:
    # Arrange
    settings = load_settings(workers_conf(alarms=pipeline("a", interval=interval)), environ={})

    # Act
    entry = beat_schedule(settings)["workers.pull:alarms"]

    # Assert
    assert entry["options"] == {"expires": pytest.approx(expires)}
    assert entry["schedule"] == float(interval)


# -- setup(app) --------------------------------------------------------------------------------

OVERRIDE = {"task": "workers.pull", "schedule": 60.0, "args": ("alarms",), "options": {}}
UNRELATED = {"task": "my.cleanup", "schedule": 3600.0}


def user_conf() -> dict[str, Any]:
    """The workers settings plus the user's own schedule: one override, one unrelated entry."""
    return {
        **mixed_conf(),
        "beat_schedule": {"workers.pull:alarms": OVERRIDE, "cleanup": UNRELATED},
    }


def expected_schedule() -> dict[str, Any]:
    return {**GENERATED, "workers.pull:alarms": OVERRIDE, "cleanup": UNRELATED}


def via_config_from_object(app: Celery) -> None:
    app.config_from_object(type("Config", (), user_conf()))


def via_conf_update(app: Celery) -> None:
    app.conf.update(user_conf())


def via_both(app: Celery) -> None:
    conf = user_conf()
    schedule = conf.pop("beat_schedule")
    app.config_from_object(type("Config", (), conf))
    app.conf.update(beat_schedule=schedule)


CONFIGURE = [
    pytest.param(via_config_from_object, id="config_from_object"),
    pytest.param(via_conf_update, id="conf_update"),
    pytest.param(via_both, id="config_from_object+conf_update"),
]


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("configure", CONFIGURE)
def test_setup_before_configuration_merges_when_the_app_is_configured(
    configure: Callable[[Celery], None],
) -> None:
    # Arrange
    app = Celery("t", set_as_current=False)
    configure(app)
    assert not app.configured

    # Act
    setup(app)
    schedule = app.conf.beat_schedule

    # Assert
    assert app.configured
    assert schedule == expected_schedule()


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("configure", CONFIGURE)
def test_setup_on_an_already_configured_app_merges_at_once(
    configure: Callable[[Celery], None],
) -> None:
    # Arrange
    app = Celery("t", set_as_current=False)
    configure(app)
    assert app.conf.beat_schedule == {"workers.pull:alarms": OVERRIDE, "cleanup": UNRELATED}
    assert app.configured

    # Act
    setup(app)

    # Assert
    assert app.conf.beat_schedule == expected_schedule()


@pytest.mark.usefixtures("clean_env")
def test_setup_without_a_user_schedule_installs_the_generated_one() -> None:
    # Arrange
    app = Celery("t", set_as_current=False)
    app.conf.update(mixed_conf())

    # Act
    setup(app)

    # Assert
    assert app.conf.beat_schedule == GENERATED


@pytest.mark.usefixtures("clean_env")
def test_setup_adds_the_stop_consumers_worker_step() -> None:
    # Arrange
    app = Celery("t", set_as_current=False)
    app.conf.update(mixed_conf())
    assert StopConsumers not in app.steps["worker"]

    # Act
    setup(app)

    # Assert
    assert StopConsumers in app.steps["worker"]


@pytest.mark.usefixtures("clean_env")
def test_setup_registers_the_tasks_on_the_app() -> None:
    # Arrange
    app = Celery("t", set_as_current=False)
    app.conf.update(mixed_conf())

    # Act
    setup(app)
    app.finalize()

    # Assert
    names = {"workers.pull", "workers.consume", "workers.supervise"}
    assert names <= set(app.tasks)


@pytest.mark.usefixtures("clean_env")
def test_setup_on_a_configured_app_merges_again_after_a_reconfiguration() -> None:
    app = Celery("reconfigured", set_as_current=False)
    app.conf.update(workers_kafka_clusters={"common": {"bootstrap_servers": ["127.0.0.1:9092"]}})
    _ = app.conf.beat_schedule
    setup(app)

    app.config_from_object(
        {
            "workers_kafka_clusters": {"common": {"bootstrap_servers": ["127.0.0.1:9092"]}},
            "workers_pipelines": {
                "a": {"cluster": "common", "topic": "a", "tasks": ["x.y"], "interval": 2.0}
            },
        }
    )

    assert list(app.conf.beat_schedule) == ["workers.pull:a"]
