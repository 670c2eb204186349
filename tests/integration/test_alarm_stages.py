"""The alarm stages (``workers.alarms.parse/build/publish/sweep``) called directly on a Celery
app whose settings point at the test Redis and Kafka."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from celery import Celery
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaTimeoutError
from kafka.future import Future

import workers.alarms.tasks  # noqa: F401 - registers the shared alarm tasks
from workers.alarms.events import parse_event
from workers.alarms.state import AlertStore, alert_id
from workers.connections import connections_for
from workers.exceptions import RecoverableError
from workers.keys import alarm_key

SEVERITY = "is not one of 1 (fatal), 2 (warning), 3 (remind)"


@dataclass(frozen=True, slots=True)
class Stages:
    app: Celery
    topic: str  # the pipeline's input topic (records are handed to parse as messages)
    dead_letters: str
    output: str
    bootstrap: str

    def run(self, name: str, *args: Any) -> Any:
        return self.app.tasks[f"workers.alarms.{name}"].run(*args)

    def store(self) -> AlertStore:
        return workers.alarms.tasks.store_for(self.app)


@pytest.fixture
def make_stages(
    kafka_bootstrap: str, redis_url: str, key_prefix: str, new_topic: Callable[..., str]
) -> Iterator[Callable[..., Stages]]:
    apps: list[Celery] = []

    def make(**conf: Any) -> Stages:
        topic = f"events-{key_prefix}"
        dead_letters = new_topic(1, name=f"{topic}.invalid")
        output = new_topic(3)
        app = Celery("t", set_as_current=False)
        app.conf.update(
            workers_kafka_clusters={"test": {"bootstrap_servers": [kafka_bootstrap]}},
            workers_redis_url=redis_url,
            workers_redis_key_prefix=key_prefix,
            workers_alarm_output_topic=output,
            workers_pipelines={
                "events": {
                    "cluster": "test",
                    "topic": topic,
                    "tasks": ["workers.alarms.parse", "workers.alarms.build"],
                    "dead_letter_topic": dead_letters,
                }
            },
            **conf,
        )
        apps.append(app)
        return Stages(app, topic, dead_letters, output, kafka_bootstrap)

    yield make
    for app in apps:
        connections_for(app).close()


@pytest.fixture
def stages(make_stages: Callable[..., Stages]) -> Stages:
    return make_stages()


def message(stages: Stages, offset: int, value: Any, partition: int = 0) -> dict[str, Any]:
    """A message as the pull hands it to the first task."""
    return {
        "id": f"test/{stages.topic}/{partition}/{offset}",
        "topic": stages.topic,
        "partition": partition,
        "offset": offset,
        "timestamp": 1_700_000_000_000 + offset,
        "key": f"k{offset}",
        "headers": [["origin", "test"]],
        "value": value,
    }


def good(
    event_id: str, t: float | str, status: str = "ABNORMAL", host: str = "h1"
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "alert_name": "disk full",
        "severity": 2,
        "status": status,
        "time": t,
        "dimensions": {"host": host},
    }


def fp_of(host: str) -> str:
    return str(parse_event(good("x", 0, host=host), 0, 0)["fingerprint"])


def read_all(stages: Stages, topic: str) -> list[ConsumerRecord]:
    """Every record of ``topic`` (the end offsets say how many), by partition and offset."""
    consumer = KafkaConsumer(
        bootstrap_servers=stages.bootstrap, enable_auto_commit=False, group_id=None
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        expected = sum(consumer.end_offsets(tps).values())
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + 15
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


def change_ids(records: list[ConsumerRecord]) -> list[str]:
    return [json.loads(r.value)["change_id"] for r in records]


def alert_hashes(stages: Stages, client: redis.Redis, hosts: list[str]) -> list[Any]:
    """The alerts' Redis hashes as stored (``{}`` for none)."""
    prefix = stages.store().prefix
    return [client.hgetall(alarm_key(prefix, "alert", fp_of(h))) for h in hosts]


# -- parse ---------------------------------------------------------------------------------------

INVALID: list[tuple[Any, str]] = [
    ([1, 2], "an event is a JSON object, got list"),
    ("plain text", "an event is a JSON object, got str"),
    ({**good("a", 1_700_000_000), "event_id": None}, "event_id is required"),
    ({**good("a", 1_700_000_000), "alert_name": " "}, "alert_name must not be empty"),
    ({**good("a", 1_700_000_000), "severity": True}, f"severity True {SEVERITY}"),
    ({**good("a", 1_700_000_000), "severity": "1"}, f"severity '1' {SEVERITY}"),
    (
        {**good("a", 1_700_000_000), "status": "FIRING"},
        "status 'FIRING' is not one of ['ABNORMAL', 'RECOVERED', 'CLOSED']",
    ),
    ({**good("a", "yesterday")}, "time 'yesterday' is not ISO 8601 or an epoch number"),
    ({**good("a", -3)}, "time -3 is not an epoch time"),
    ({**good("a", 1_700_000_000), "dimensions": ["h1"]}, "dimensions must be an object, got list"),
    (
        {**good("a", 1_700_000_000), "dimensions": {"port": 80}},
        "dimensions.port must be a string, got int",
    ),
    ({**good("a", 1_700_000_000), "target": 7}, "target must be a string, got int"),
    ({**good("a", 1_700_000_000), "bk_biz_id": "2"}, "bk_biz_id must be an integer, got str"),
    (
        {**good("a", 1_700_000_000), "dedupe_keys": []},
        "dedupe_keys must be a non-empty list of field names",
    ),
]


def fail_once(monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    """Make ``AlertStore.<method>`` raise RecoverableError on its first call only."""
    real = getattr(AlertStore, method)
    calls = {"n": 0}

    def failing(self: AlertStore, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RecoverableError("redis briefly unavailable")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(AlertStore, method, failing)


def test_parse_dead_letters_every_invalid_event_with_its_reason(stages: Stages) -> None:
    # Arrange: two good events around the bad ones, and one from too far in the future
    now = time.time()
    future = math.floor(now) + 3600
    values = [good("ok-1", now - 60), *(v for v, _ in INVALID), good("future", future)]
    values.append(good("ok-2", now - 30, host="h2"))
    messages = [message(stages, offset, value) for offset, value in enumerate(values)]

    # Act
    events = stages.run("parse", messages)
    letters = read_all(stages, stages.dead_letters)

    # Assert
    assert [(e["event_id"], e["record_id"], e["cluster"]) for e in events] == [
        ("ok-1", f"test/{stages.topic}/0/0", "test"),
        ("ok-2", f"test/{stages.topic}/0/{len(values) - 1}", "test"),
    ]
    headers = [dict(letter.headers) for letter in letters]
    reasons = [h["workers.reason"].decode() for h in headers]
    future_reasons = {
        f"invalid event: time {future} is {ahead} s in the future (limit 300 s)"
        for ahead in (3599, 3600)
    }
    assert reasons[:-1] == [f"invalid event: {reason}" for _, reason in INVALID]
    assert reasons[-1] in future_reasons
    assert [int(h["workers.offset"]) for h in headers] == list(range(1, len(values) - 1))
    assert {(h["workers.topic"], h["workers.cluster"], h["origin"]) for h in headers} == {
        (stages.topic.encode(), b"test", b"test")
    }
    assert [letter.key for letter in letters] == [f"k{n}".encode() for n in range(1, 16)]
    assert letters[0].value == b"[1, 2]"
    assert letters[1].value == b"plain text"
    assert json.loads(letters[2].value) == values[3]
    assert stages.store().stats() == {"invalid": 15}


def test_parse_of_only_valid_events_sends_and_counts_nothing(stages: Stages) -> None:
    # Arrange
    now = time.time()
    messages = [message(stages, n, good(f"e{n}", now - 10)) for n in range(3)]

    # Act
    events = stages.run("parse", messages)

    # Assert
    assert [e["event_id"] for e in events] == ["e0", "e1", "e2"]
    assert read_all(stages, stages.dead_letters) == []
    assert stages.store().stats() == {}


# -- build and publish ---------------------------------------------------------------------------


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


def failing_send(
    stages: Stages, monkeypatch: pytest.MonkeyPatch, how: str, failing: int = 2
) -> None:
    """Make the ``failing``-th ``send`` of the shared producer fail: at once (``raise``) or as
    a failed delivery the producer reports later (``future``)."""
    producer = connections_for(stages.app).producer("test")
    real = producer.send
    calls = {"n": 0}

    def send(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] != failing:
            return real(*args, **kwargs)
        if how == "raise":
            raise KafkaTimeoutError("no metadata")
        return Future().failure(KafkaTimeoutError("no ack"))

    monkeypatch.setattr(producer, "send", send)


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


# -- sweep ---------------------------------------------------------------------------------------


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
    stages = make_stages(workers_alarm_quiet_seconds=10)
    t = math.floor(time.time()) - 60
    stages.run(
        "publish", stages.run("build", stages.run("parse", [message(stages, 0, good("q", t))]))
    )
    quiet_id = alert_id(fp_of("h1"), f"test/{stages.topic}/0/0")
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
    stages = make_stages(workers_alarm_quiet_seconds=10)
    t = math.floor(time.time()) - 60
    stages.run(
        "publish", stages.run("build", stages.run("parse", [message(stages, 0, good("q", t))]))
    )
    quiet_id = alert_id(fp_of("h1"), f"test/{stages.topic}/0/0")
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


def test_a_failed_quiet_close_is_published_even_if_a_new_alert_opens_before_the_retry(
    make_stages: Callable[..., Stages], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange
    stages = make_stages(workers_alarm_quiet_seconds=10)
    t = math.floor(time.time()) - 60
    stages.run(
        "publish", stages.run("build", stages.run("parse", [message(stages, 0, good("q", t))]))
    )
    quiet_id = alert_id(fp_of("h1"), f"test/{stages.topic}/0/0")
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
    stages = make_stages(workers_alarm_quiet_seconds=10)
    t = math.floor(time.time()) - 60
    stages.run(
        "publish", stages.run("build", stages.run("parse", [message(stages, 0, good("q", t))]))
    )
    quiet_id = alert_id(fp_of("h1"), f"test/{stages.topic}/0/0")
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
