"""The sweep stage (``workers.alarms.sweep``) on the test Redis and Kafka: a quiet alert is
closed and its close published exactly once, whatever fails and is retried in between."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable

import pytest
import redis

from tests.integration.alarm_stages_support import (
    Stages,
    change_ids,
    fail_once,
    failing_send,
    fp_of,
    good,
    message,
    read_all,
)
from workers.alarms.state import alert_id
from workers.exceptions import RecoverableError
from workers.state.keys import alarm_key


def quiet_alert(make_stages: Callable[..., Stages]) -> tuple[Stages, int, str]:
    """Stages whose alerts close after 10 quiet seconds, with one alert (host h1) opened and
    published a minute ago: the stages, that event's time (epoch seconds) and the alert's id."""
    stages = make_stages(workers_alarm_quiet_seconds=10)
    t = math.floor(time.time()) - 60
    stages.run(
        "publish", stages.run("build", stages.run("parse", [message(stages, 0, good("q", t))]))
    )
    return stages, t, alert_id(fp_of("h1"), f"test/{stages.topic}/0/0")


def test_sweep_closes_a_quiet_alert_and_publishes_the_close(
    make_stages: Callable[..., Stages],
) -> None:
    # Arrange
    stages = make_stages(workers_alarm_quiet_seconds=10)
    t = math.floor(time.time()) - 60
    messages = [
        message(stages, 0, good("q", t)),
        message(stages, 1, good("busy", t + 59, host="h2")),
    ]
    opened = stages.run("publish", stages.run("build", stages.run("parse", messages)))
    quiet_id = alert_id(fp_of("h1"), f"test/{stages.topic}/0/0")

    # Act
    swept = stages.run("sweep")
    again = stages.run("sweep")
    records = read_all(stages, stages.output)

    # Assert
    assert swept == {"closed": 1}
    assert again == {"closed": 0}
    assert len(opened) == 2
    assert len(records) == 3
    close = [json.loads(r.value) for r in records if json.loads(r.value)["change"] == "closed"]
    assert [c["change_id"] for c in close] == [f"{quiet_id}:2"]
    alert = close[0]["alert"]
    assert (alert["status"], alert["closed_by"], alert["cluster"]) == ("CLOSED", "quiet", "test")
    assert (alert["last_time"], alert["version"], alert["count"]) == (t * 1000, 2, 1)
    assert alert["last_change"] == t * 1000  # closed as of its last event
    assert stages.store().get(fp_of("h1")) == alert
    assert (stages.store().get(fp_of("h2")) or {})["status"] == "ABNORMAL"
    assert stages.store().stats() == {"opened": 2, "published": 3, "quiet_closed": 1}


@pytest.mark.parametrize("how", ["raise", "future"])
def test_a_sweep_retried_after_a_failed_send_publishes_the_close_exactly_once(
    make_stages: Callable[..., Stages],
    monkeypatch: pytest.MonkeyPatch,
    redis_client: redis.Redis,
    how: str,
) -> None:
    # Arrange
    stages, _, quiet_id = quiet_alert(make_stages)
    failing_send(stages, monkeypatch, how, failing=1)
    with pytest.raises(RecoverableError):
        stages.run("sweep")
    closed_by_failed_try = stages.store().get(fp_of("h1"))

    # Act
    retried = stages.run("sweep")
    after = stages.run("sweep")
    records = read_all(stages, stages.output)

    # Assert
    assert (closed_by_failed_try or {})["closed_by"] == "quiet"
    assert retried == {"closed": 1}
    assert after == {"closed": 0}
    assert change_ids(records).count(f"{quiet_id}:2") == 1
    assert len(records) == 2
    close = json.loads(records[-1].value)
    assert close["alert"] == closed_by_failed_try == stages.store().get(fp_of("h1"))
    assert redis_client.zcard(alarm_key(stages.store().prefix, "alerts")) == 0
    # A failed delivery may have reached the topic: its resend is counted (here it had not).
    again = {"resent": 1} if how == "future" else {}
    assert stages.store().stats() == {"opened": 1, "published": 2, "quiet_closed": 1, **again}


def test_a_sweep_retried_after_a_failure_past_the_send_publishes_nothing_again(
    make_stages: Callable[..., Stages],
    monkeypatch: pytest.MonkeyPatch,
    redis_client: redis.Redis,
) -> None:
    # Arrange: the close is sent and marked published, then forget_closed fails
    stages, _, quiet_id = quiet_alert(make_stages)
    fail_once(monkeypatch, "forget_closed")
    with pytest.raises(RecoverableError):
        stages.run("sweep")

    # Act
    retried = stages.run("sweep")
    records = read_all(stages, stages.output)

    # Assert
    assert retried == {"closed": 0}
    assert change_ids(records).count(f"{quiet_id}:2") == 1
    assert redis_client.zcard(alarm_key(stages.store().prefix, "alerts")) == 0
    assert stages.store().stats() == {"opened": 1, "published": 2, "quiet_closed": 1}


def test_a_failed_quiet_close_is_published_even_if_a_new_alert_opens_before_the_retry(
    make_stages: Callable[..., Stages], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange
    stages, t, quiet_id = quiet_alert(make_stages)
    failing_send(stages, monkeypatch, "raise", failing=1)
    with pytest.raises(RecoverableError):
        stages.run("sweep")
    reopened = stages.run(
        "publish", stages.run("build", stages.run("parse", [message(stages, 1, good("r", t + 59))]))
    )

    # Act
    stages.run("sweep")
    records = read_all(stages, stages.output)

    # Assert
    # The new alert's build carries the old alert's unpublished close, published first.
    assert [c["change"] for c in reopened] == ["closed", "opened"]
    assert reopened[0]["change_id"] == f"{quiet_id}:2"
    assert change_ids(records).count(f"{quiet_id}:2") == 1


def test_a_late_event_after_the_published_marker_expired_does_not_publish_the_close_again(
    make_stages: Callable[..., Stages], redis_client: redis.Redis
) -> None:
    # Arrange: closed and published by a sweep
    stages, t, quiet_id = quiet_alert(make_stages)
    assert stages.run("sweep") == {"closed": 1}
    store = stages.store()
    # the dedupe TTL passes: the published marker expires
    redis_client.delete(alarm_key(store.prefix, "applied", fp_of("h1"), f"p:{quiet_id}:2"))
    late = stages.run("build", stages.run("parse", [message(stages, 1, good("late", t - 5))]))

    # Act
    swept = stages.run("sweep")
    records = read_all(stages, stages.output)

    # Assert
    assert late == []
    assert swept == {"closed": 0}
    assert change_ids(records).count(f"{quiet_id}:2") == 1
