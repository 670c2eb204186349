"""``AlertStore`` on a real Redis applies a batch with one Lua call per chunk of events (or per
hash slot): the same outcomes, changes, alerts and stored state as one event at a time, for
records repeated within a batch, alerts touched by several events of one batch and batches of
many fingerprints; record markers kept by an earlier version still replay; claims and marks of
many changes go by chunk and by slot too."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
import redis

from tests.alarm_model import AlertModel, state_of
from tests.integration.alarm_state_support import FP, TTL, B, alert, event, index, raw_alerts
from workers.alarms import state
from workers.alarms.state import AlertStore, Applied, alert_id
from workers.state.keys import alarm_key


def seen(applied: list[Applied]) -> list[tuple[Any, ...]]:
    return [(a.record_id, a.outcome, a.change, a.alert, a.unpublished_close) for a in applied]


def workload(rng: random.Random, total: int, fingerprints: int) -> list[dict[str, Any]]:
    """Events of ``fingerprints`` alerts in a rough time order, with records sent twice,
    event ids repeated in new records, late (stale) events, recoveries and closes."""
    events: list[dict[str, Any]] = []
    for n in range(total):
        roll = rng.random()
        if events and roll < 0.05:
            events.append(dict(rng.choice(events)))  # the same record again
            continue
        host = f"h{rng.randrange(fingerprints)}"
        t = B + 1000 * (n // 4) - (rng.randrange(30_000) if roll > 0.95 else 0)
        status = rng.choices(["ABNORMAL", "RECOVERED", "CLOSED"], [85, 10, 5])[0]
        repeat = events[-1]["event_id"] if events and roll < 0.08 else None
        events.append(
            event(n, t, status, severity=rng.randint(1, 3), dims={"host": host}, event_id=repeat)
        )
    return events


# -- one batch, one call per chunk ---------------------------------------------------------------


def test_a_record_twice_in_one_batch_replays_its_own_change(alert_store: AlertStore) -> None:
    # Arrange
    batch = [event(1, B), event(1, B), event(2, B + 10), event(3, B + 20, event_id="e2")]

    # Act
    applied = alert_store.apply(batch)

    # Assert
    assert [(a.outcome, a.change) for a in applied] == [
        ("opened", "opened"), ("replayed", "opened"), ("updated", "updated"), ("duplicate", ""),
    ]  # fmt: skip
    assert applied[1].alert == applied[0].alert
    assert applied[0].alert == alert(
        id=alert_id(FP, "test/events/0/1"), status="ABNORMAL", count=1, severity=2,
        first_time=B, last_time=B, last_change=B, version=1,
    )  # fmt: skip
    assert (alert_store.get(FP) or {})["count"] == 2


def test_an_alert_touched_by_several_events_of_one_batch_reports_every_version(
    alert_store: AlertStore, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Arrange
    batch = [
        event(1, B, severity=3),
        event(2, B + 10, severity=1),
        event(3, B + 20, "RECOVERED"),
        event(4, B + 30, severity=2),
        event(5, B + 40, "CLOSED"),
        event(6, B + 50, severity=2),  # a new alert
        event(7, B + 45),  # older than the new alert's last change: stale
        event(8, B + 60, severity=3),
    ]
    first_id, second_id = alert_id(FP, "test/events/0/1"), alert_id(FP, "test/events/0/6")

    # Act
    applied = alert_store.apply(batch)

    # Assert
    assert [(a.outcome, a.alert and (a.alert["id"], a.alert["version"])) for a in applied] == [
        ("opened", (first_id, 1)), ("updated", (first_id, 2)), ("recovered", (first_id, 3)),
        ("updated", (first_id, 4)), ("closed", (first_id, 5)), ("opened", (second_id, 6)),
        ("stale", None), ("updated", (second_id, 7)),
    ]  # fmt: skip
    assert [a.alert and state_of(a.alert) for a in applied][1:5] == [
        state_of(alert(id=first_id, status="ABNORMAL", count=2, severity=1, first_time=B,
                       last_time=B + 10, last_change=B, version=2)),
        state_of(alert(id=first_id, status="RECOVERED", count=2, severity=1, first_time=B,
                       last_time=B + 20, last_change=B + 20, version=3)),
        state_of(alert(id=first_id, status="ABNORMAL", count=3, severity=1, first_time=B,
                       last_time=B + 30, last_change=B + 30, version=4)),
        state_of(alert(id=first_id, status="CLOSED", count=3, severity=1, first_time=B,
                       last_time=B + 30, last_change=B + 40, version=5, closed_by="event")),
    ]  # fmt: skip
    assert applied[-1].alert == alert_store.get(FP)
    assert applied[-1].alert == alert(
        id=second_id, status="ABNORMAL", count=2, severity=2, first_time=B + 50,
        last_time=B + 60, last_change=B + 50, version=7,
    )  # fmt: skip
    assert index(redis_client, key_prefix) == [(FP.encode(), float(B + 60))]


@pytest.mark.parametrize(
    ("chunk", "per_slot"),
    [(state.CHUNK, False), (7, False), (1000, False), (state.CHUNK, True)],
    ids=["default-chunks", "chunks-of-7", "one-call", "per-slot"],
)
def test_a_batch_gives_what_one_event_at_a_time_gives(
    redis_client: redis.Redis,
    key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    chunk: int,
    per_slot: bool,
) -> None:
    # Arrange: 700 events of 150 alerts (more than a chunk), in batches of 350
    monkeypatch.setattr(state, "CHUNK", chunk)
    events = workload(random.Random(11), 700, 150)
    batched = AlertStore(redis_client, f"{key_prefix}-batch", TTL, per_slot=per_slot)
    single = AlertStore(redis_client, f"{key_prefix}-single", TTL)
    fps = sorted({e["fingerprint"] for e in events})
    model = AlertModel()

    # Act
    got = batched.apply(events[:350]) + batched.apply(events[350:])
    one_by_one = [a for e in events for a in single.apply([e])]

    # Assert
    assert seen(got) == seen(one_by_one)
    assert [(a.outcome, a.change, a.alert and state_of(a.alert)) for a in got] == [
        model.apply_change(e) for e in events
    ]
    assert raw_alerts(redis_client, batched.prefix, fps) == raw_alerts(
        redis_client, single.prefix, fps
    )
    assert index(redis_client, batched.prefix) == index(redis_client, single.prefix)
    assert len(fps) > 100
    assert {a.outcome for a in got} == {
        "duplicate", "replayed", "stale", "ignored", "opened", "updated", "recovered", "closed"
    }  # fmt: skip


def test_the_same_batch_again_in_other_chunks_replays_it(
    alert_store: AlertStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange
    events = workload(random.Random(5), 300, 40)
    first = alert_store.apply(events)
    monkeypatch.setattr(state, "CHUNK", 13)

    # Act
    again = alert_store.apply(events)

    # Assert
    assert [a.outcome for a in again] == ["replayed" if a.change else "duplicate" for a in first]
    assert [(a.change, a.alert) for a in again] == [(a.change, a.alert) for a in first]


# -- what Redis keeps ----------------------------------------------------------------------------


def test_a_record_marker_kept_by_an_earlier_version_still_replays(
    alert_store: AlertStore, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Arrange: the marker as earlier versions kept it: [change, the hash as HGETALL lists it]
    first = alert_store.apply([event(1, B, target="db-1")])[0]
    flat = [x.decode() for pair in redis_client.hgetall(alarm_key(key_prefix, "alert", FP)).items()
            for x in pair]  # fmt: skip
    marker = alarm_key(key_prefix, "applied", FP, "r:test/events/0/1")
    redis_client.set(marker, json.dumps(["opened", flat]), ex=TTL)

    # Act
    replayed = alert_store.apply([event(1, B, target="db-1")])[0]

    # Assert
    assert (replayed.outcome, replayed.change) == ("replayed", "opened")
    assert replayed.alert == first.alert
    assert first.alert is not None
    assert first.alert["target"] == "db-1"


def test_the_record_marker_keeps_the_change_as_the_batch_returned_it(
    alert_store: AlertStore, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Act
    applied = alert_store.apply([event(1, B), event(2, B - 10)])

    # Assert
    made = redis_client.get(alarm_key(key_prefix, "applied", FP, "r:test/events/0/1"))
    stale = redis_client.get(alarm_key(key_prefix, "applied", FP, "r:test/events/0/2"))
    assert made is not None
    assert json.loads(made) == ["opened", applied[0].alert]
    assert stale == b""


def test_values_the_fast_encoder_refuses_are_kept_exactly(
    alert_store: AlertStore, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Arrange: a lone surrogate and an integer beyond 64 bits (orjson refuses both)
    odd = event(1, B, description="half \ud800 a pair", strategy_id=2**64 + 1)

    # Act
    applied = alert_store.apply([odd])[0]
    replayed = alert_store.apply([odd])[0]
    updated = alert_store.apply([event(2, B + 10)])[0]

    # Assert
    for got in (applied.alert, replayed.alert, updated.alert, alert_store.get(FP)):
        assert got is not None
        assert (got["description"], got["strategy_id"]) == ("half \ud800 a pair", 2**64 + 1)
    assert replayed.outcome == "replayed"
    meta = redis_client.hget(alarm_key(key_prefix, "alert", FP), "meta")
    assert meta is not None
    assert json.loads(meta)["strategy_id"] == 2**64 + 1


# -- claims and marks of many changes ------------------------------------------------------------


def changes_of(n: int) -> list[dict[str, Any]]:
    """``n`` alert changes of ``n // 2`` alerts (two versions each)."""
    out = []
    for k in range(n):
        fp = event(0, B, dims={"host": f"h{k // 2}"})["fingerprint"]
        version = k % 2 + 1
        alert_of = {"id": f"a{k // 2}", "fingerprint": fp, "version": version}
        out.append({"change": "updated", "change_id": f"a{k // 2}:{version}", "alert": alert_of})
    return out


@pytest.mark.parametrize("per_slot", [False, True], ids=["chunks", "per-slot"])
def test_claims_and_marks_of_many_changes(
    redis_client: redis.Redis, key_prefix: str, per_slot: bool
) -> None:
    # Arrange
    store = AlertStore(redis_client, key_prefix, TTL, per_slot=per_slot)
    changes = changes_of(3 * state.CHUNK + 1)
    sent, kept = changes[::2], changes[1::2]

    # Act
    first = store.claim(changes)
    second = store.claim(changes)
    store.mark_published(sent)
    store.release(kept)
    third = store.claim(changes)

    # Assert
    assert first == (changes, set())
    assert second == (changes, {c["change_id"] for c in changes})
    assert third == (kept, set())
    assert store.unpublished(changes) == kept
