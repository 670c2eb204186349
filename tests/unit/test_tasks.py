"""The shared tasks on a fresh app, the slot check of ``consume``, and the shutdown flag."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery

import workers.pulling.tasks
from workers.config import Settings, load_settings
from workers.exceptions import ConfigError, RecoverableError
from workers.runtime.shutdown import clear, request_stop, sigterm_stops, stop_requested

NAMES = ("workers.pull", "workers.consume", "workers.supervise")


@pytest.fixture
def app() -> Celery:
    app = Celery("t", set_as_current=False)
    app.finalize()
    return app


@pytest.fixture
def no_stop() -> Iterator[None]:
    """Every test starts and ends without a stop request (the flag is process-wide)."""
    clear()
    try:
        yield
    finally:
        clear()


# -- registration and retries ------------------------------------------------------------------


def test_tasks_are_registered_under_their_names_on_a_fresh_app(app: Celery) -> None:
    # Act
    tasks = {name: app.tasks.get(name) for name in NAMES}

    # Assert
    assert {name: task is not None for name, task in tasks.items()} == dict.fromkeys(NAMES, True)
    assert {name: task.name for name, task in tasks.items()} == {name: name for name in NAMES}
    assert {name: task.app is app for name, task in tasks.items()} == dict.fromkeys(NAMES, True)


@pytest.mark.parametrize(("name", "max_retries"), [("workers.pull", 3), ("workers.consume", 10)])
def test_retries_are_declared_on_the_tasks(app: Celery, name: str, max_retries: int) -> None:
    # Act
    task = app.tasks[name]

    # Assert
    assert RecoverableError in task.autoretry_for
    assert task.max_retries == max_retries
    assert task.retry_backoff
    assert task.retry_jitter is True


def test_consume_is_acknowledged_late(app: Celery) -> None:
    # Act
    task = app.tasks["workers.consume"]

    # Assert
    assert task.acks_late is True


# -- consume checks its slot before Redis --------------------------------------------------------


class NoRedis:
    """Connections with real settings whose Redis must not be touched."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def redis(self, url: str | None = None) -> Any:
        raise AssertionError("consume touched Redis")


@pytest.fixture
def connected_to(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Patches ``connections_for``; the list records the apps it was asked for."""
    settings = load_settings(
        {
            "workers_kafka_clusters": {"common": {"bootstrap_servers": ["127.0.0.1:9092"]}},
            "workers_pipelines": {
                "stream": {
                    "cluster": "common",
                    "topic": "stream-events",
                    "tasks": ["a.b"],
                    "mode": "long_lived",
                    "concurrency": 2,
                }
            },
        },
        environ={},
    )
    asked: list[Any] = []

    def connections_for(app: Any) -> NoRedis:
        asked.append(app)
        return NoRedis(settings)

    monkeypatch.setattr(workers.pulling.tasks, "connections_for", connections_for)
    return asked


@pytest.mark.parametrize("slot", [2, 3, -1])
def test_consume_with_a_slot_outside_concurrency_raises_config_error_before_redis(
    app: Celery, connected_to: list[Any], slot: int
) -> None:
    # Arrange
    task = app.tasks["workers.consume"]

    # Act
    with pytest.raises(ConfigError) as info:
        task.run("stream", slot)

    # Assert
    assert connected_to == [app]
    assert info.value.key == "workers.consume slot of pipeline 'stream'"
    assert info.value.value == slot
    assert info.value.expected == "a slot from 0 to 1 (the pipeline's concurrency is 2)"


@pytest.mark.parametrize("slot", [0, 1])
def test_consume_with_a_slot_inside_concurrency_goes_on_to_redis(
    app: Celery, connected_to: list[Any], slot: int
) -> None:
    # Arrange
    task = app.tasks["workers.consume"]

    # Act
    with pytest.raises(AssertionError) as info:
        task.run("stream", slot)

    # Assert
    assert str(info.value) == "consume touched Redis"
    assert connected_to == [app]


# -- shutdown flag ---------------------------------------------------------------------------


@pytest.mark.usefixtures("no_stop")
def test_request_stop_then_clear() -> None:
    # Arrange
    before = stop_requested()

    # Act
    request_stop()
    requested = stop_requested()
    clear()
    cleared = stop_requested()

    # Assert
    assert (before, requested, cleared) == (False, True, False)


def previous_handler(signum: int, frame: Any) -> None:
    raise AssertionError("the previous SIGTERM handler ran inside sigterm_stops()")


@pytest.fixture
def sigterm_handler() -> Iterator[Any]:
    """Installs ``previous_handler`` for SIGTERM; restores the original at teardown."""
    original = signal.signal(signal.SIGTERM, previous_handler)
    try:
        yield previous_handler
    finally:
        signal.signal(signal.SIGTERM, original)


@pytest.mark.usefixtures("no_stop")
def test_sigterm_stops_turns_sigterm_into_a_stop_request(sigterm_handler: Any) -> None:
    # Arrange
    assert threading.current_thread() is threading.main_thread()

    # Act
    with sigterm_stops():
        before = stop_requested()
        os.kill(os.getpid(), signal.SIGTERM)
        after = stop_requested()

    # Assert
    assert (before, after) == (False, True)
    assert signal.getsignal(signal.SIGTERM) is sigterm_handler


@pytest.mark.usefixtures("no_stop")
def test_sigterm_stops_restores_the_previous_handler_after_an_error(
    sigterm_handler: Any,
) -> None:
    # Act
    with pytest.raises(RuntimeError), sigterm_stops():
        inside = signal.getsignal(signal.SIGTERM)
        raise RuntimeError("consumer failed")

    # Assert
    assert inside is not sigterm_handler
    assert signal.getsignal(signal.SIGTERM) is sigterm_handler
    assert stop_requested() is False


@pytest.mark.usefixtures("no_stop")
def test_sigterm_stops_outside_the_main_thread_leaves_the_handler_alone(
    sigterm_handler: Any,
) -> None:
    # Arrange
    seen: list[Any] = []

    def run() -> None:
        with sigterm_stops():
            seen.append(signal.getsignal(signal.SIGTERM))

    # Act
    thread = threading.Thread(target=run)
    thread.start()
    thread.join(5)

    # Assert
    assert seen == [sigterm_handler]
    assert signal.getsignal(signal.SIGTERM) is sigterm_handler
