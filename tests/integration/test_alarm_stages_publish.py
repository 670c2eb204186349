"""The build and publish stages (``workers.alarms.build/publish``) on the test Redis and Kafka:
one change per alert change, sent keyed by fingerprint in order, and sent once even when a
batch or a failed publish is retried."""

from __future__ import annotations

import json
import math
import time
from collections import Counter

import pytest
import redis
from kafka.consumer.fetcher import ConsumerRecord

from tests.integration.alarm_stages_support import (
    Stages,
    alert_hashes,
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


def test_build_returns_one_change_per_alert_change(stages: Stages) -> None:
    # Arrange
    t = math.floor(time.time()) - 100
    values = [
        good("a1", t),
        good("a2", t + 1),
        good("a2", t + 2),  # a repeated event id: no change
        good("b1", t, host="h2"),
        good("a3", t + 3, "RECOVERED"),
        good("a4", t + 2),  # older than the recovery: stale
        good("b2", t + 5, "CLOSED", host="h2"),
        good("c1", t, "RECOVERED", host="h3"),  # no alert: ignored
    ]
    events = stages.run("parse", [message(stages, n, v) for n, v in enumerate(values)])
    a_id = alert_id(fp_of("h1"), f"test/{stages.topic}/0/0")
    b_id = alert_id(fp_of("h2"), f"test/{stages.topic}/0/3")

    # Act
    changes = stages.run("build", events)

    # Assert
    assert [(c["change"], c["change_id"]) for c in changes] == [
        ("opened", f"{a_id}:1"),
        ("updated", f"{a_id}:2"),
        ("opened", f"{b_id}:1"),
        ("recovered", f"{a_id}:3"),
        ("closed", f"{b_id}:2"),
    ]
    assert changes[3]["alert"] == {
        "id": a_id,
        "alert_name": "disk full",
        "fingerprint": fp_of("h1"),
        "dimensions": {"host": "h1"},
        "target": None,
        "description": None,
        "metric": None,
        "cluster": "test",
        "strategy_id": None,
        "bk_biz_id": None,
        "status": "RECOVERED",
        "severity": 2,
        "count": 2,
        "first_time": t * 1000,
        "last_time": (t + 3) * 1000,
        "last_change": (t + 3) * 1000,
        "version": 3,
        "closed_by": None,
    }
    assert changes[4]["alert"]["closed_by"] == "event"
    assert stages.store().stats() == {
        "opened": 2,
        "updated": 1,
        "duplicate": 1,
        "recovered": 1,
        "stale": 1,
        "closed": 1,
        "ignored": 1,
    }


def test_publish_sends_changes_keyed_by_fingerprint_in_order(stages: Stages) -> None:
    # Arrange
    t = math.floor(time.time()) - 100
    values = [good(f"e{n}", t + n, host=f"h{n % 4}") for n in range(16)]
    values += [good("r1", t + 20, "RECOVERED", host="h1"), good("r2", t + 21, "CLOSED", host="h2")]
    events = stages.run("parse", [message(stages, n, v) for n, v in enumerate(values)])
    changes = stages.run("build", events)

    # Act
    published = stages.run("publish", changes)
    records = read_all(stages, stages.output)

    # Assert
    assert published == changes
    assert len(changes) == 18
    assert sorted(change_ids(records)) == sorted(c["change_id"] for c in changes)
    by_key: dict[bytes, list[ConsumerRecord]] = {}
    for record in records:
        by_key.setdefault(record.key, []).append(record)
    assert sorted(by_key) == sorted(fp_of(f"h{n}").encode() for n in range(4))
    for key, own in by_key.items():
        values_of_key = [json.loads(r.value) for r in own]
        assert {r.partition for r in own} == {own[0].partition}
        assert [v["alert"]["version"] for v in values_of_key] == list(range(1, len(own) + 1))
        assert {v["alert"]["fingerprint"].encode() for v in values_of_key} == {key}
    assert [json.loads(r.value) for r in by_key[fp_of("h2").encode()]] == [
        c for c in changes if c["alert"]["fingerprint"] == fp_of("h2")
    ]
    assert stages.store().stats() == {
        "opened": 4,
        "updated": 12,
        "recovered": 1,
        "closed": 1,
        "published": 18,
    }


def test_the_same_messages_twice_publish_nothing_the_second_time(
    stages: Stages, redis_client: redis.Redis
) -> None:
    # Arrange
    t = math.floor(time.time()) - 100
    values = [good(f"e{n}", t + n, host=f"h{n % 3}") for n in range(9)]
    values.append(good("r", t + 20, "RECOVERED", host="h0"))
    values.append(good("e0", t + 30, host="h0"))  # a repeated event id: no change
    messages = [message(stages, n, v) for n, v in enumerate(values)]
    first = stages.run("publish", stages.run("build", stages.run("parse", messages)))
    state = alert_hashes(stages, redis_client, ["h0", "h1", "h2"])
    published = read_all(stages, stages.output)

    # Act
    events = stages.run("parse", messages)
    changes = stages.run("build", events)
    second = stages.run("publish", changes)

    # Assert: the build replays the same changes; publish sends none of them again
    assert len(first) == 10
    assert len(published) == 10
    assert len(events) == 11
    assert changes == first
    assert second == changes
    assert change_ids(read_all(stages, stages.output)) == change_ids(published)
    assert alert_hashes(stages, redis_client, ["h0", "h1", "h2"]) == state
    assert stages.store().stats() == {
        "opened": 3,
        "updated": 6,
        "recovered": 1,
        "published": 10,
        "duplicate": 2,
        "replayed": 10,
    }


def test_publish_sends_only_the_changes_not_published_yet(stages: Stages) -> None:
    # Arrange
    t = math.floor(time.time()) - 100
    values = [good("a", t), good("b", t, host="h2"), good("c", t + 1), good("d", t + 2)]
    changes = stages.run(
        "build", stages.run("parse", [message(stages, n, v) for n, v in enumerate(values)])
    )
    ids = [c["change_id"] for c in changes]
    stages.run("publish", changes[:2])

    # Act
    mixed = stages.run("publish", changes)
    again = stages.run("publish", changes)
    records = read_all(stages, stages.output)

    # Assert
    assert mixed == again == changes
    assert sorted(change_ids(records)) == sorted(ids)
    assert stages.store().unpublished(changes) == []
    assert stages.store().stats() == {"opened": 2, "updated": 2, "published": 4}


def test_published_markers_expire_after_the_dedupe_ttl(
    stages: Stages, redis_client: redis.Redis
) -> None:
    # Arrange: the default dedupe TTL, a day
    t = math.floor(time.time()) - 100
    changes = stages.run("build", stages.run("parse", [message(stages, 0, good("a", t))]))

    # Act
    stages.run("publish", changes)

    # Assert
    store = stages.store()
    marker = alarm_key(store.prefix, "applied", fp_of("h1"), "p:" + changes[0]["change_id"])
    assert 86_395 <= redis_client.ttl(marker) <= 86_400


@pytest.mark.parametrize(
    ("how", "error", "delivered", "resent"),
    [
        pytest.param(
            "raise",
            "alert changes to {topic!r} not sent: KafkaTimeoutError('no metadata')",
            [0],
            0,  # the producer refused the second change at once: known not sent
            id="send-raises",
        ),
        pytest.param(
            "future",
            "1 of 3 alert changes to {topic!r} failed: KafkaTimeoutError('no ack')",
            [0, 2],
            1,  # the second change's outcome was unknown: sent again and counted
            id="delivery-fails",
        ),
    ],
)
def test_a_failed_publish_is_recoverable_and_its_retry_sends_only_what_was_not_confirmed(
    stages: Stages,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
    error: str,
    delivered: list[int],
    resent: int,
) -> None:
    # Arrange
    t = math.floor(time.time()) - 100
    values = [good("a", t), good("b", t, host="h2"), good("c", t + 1)]
    changes = stages.run(
        "build", stages.run("parse", [message(stages, n, v) for n, v in enumerate(values)])
    )
    failing_send(stages, monkeypatch, how)

    # Act
    with pytest.raises(RecoverableError) as failed:
        stages.run("publish", changes)
    stats_after_failure = stages.store().stats()
    retried = stages.run("publish", changes)
    records = read_all(stages, stages.output)

    # Assert
    ids = [c["change_id"] for c in changes]
    assert str(failed.value) == error.format(topic=stages.output)
    assert stats_after_failure == {"opened": 2, "updated": 1, "published": len(delivered)}
    assert retried == changes
    # what the failed attempt delivered was marked at once: nothing is on the topic twice
    assert Counter(change_ids(records)) == Counter(ids)
    again = {"resent": resent} if resent else {}
    assert stages.store().stats() == {"opened": 2, "updated": 1, "published": 3, **again}


def test_a_build_retried_after_a_failure_past_apply_still_returns_its_changes(
    stages: Stages, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange
    t = math.floor(time.time()) - 100
    events = stages.run("parse", [message(stages, 0, good("a", t))])
    fail_once(monkeypatch, "count")
    with pytest.raises(RecoverableError):
        stages.run("build", events)

    # Act
    changes = stages.run("build", events)
    published = stages.run("publish", changes)
    records = read_all(stages, stages.output)

    # Assert
    opened_id = alert_id(fp_of("h1"), f"test/{stages.topic}/0/0")
    assert [(c["change"], c["change_id"]) for c in changes] == [("opened", f"{opened_id}:1")]
    assert changes[0]["alert"] == stages.store().get(fp_of("h1"))
    assert published == changes
    assert change_ids(records) == [f"{opened_id}:1"]
    assert stages.store().stats() == {"replayed": 1, "published": 1}


def test_publish_sends_a_change_given_twice_in_one_call_once(stages: Stages) -> None:
    # Arrange: the same record twice in one batch: build emits its change twice
    t = math.floor(time.time()) - 100
    messages = [message(stages, 0, good("a", t)), message(stages, 1, good("b", t + 1))]
    changes = stages.run("build", stages.run("parse", [*messages, messages[0]]))

    # Act
    published = stages.run("publish", changes)
    records = read_all(stages, stages.output)

    # Assert
    ids = [c["change_id"] for c in changes]
    assert len(ids) == 3
    assert ids[2] == ids[0]
    assert published == changes
    assert change_ids(records) == ids[:2]
    assert stages.store().stats() == {"opened": 1, "updated": 1, "replayed": 1, "published": 2}
