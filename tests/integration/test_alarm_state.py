"""``AlertStore`` on a real Redis: alert lifecycles, out-of-order input, idempotence, the
reference model (``tests/alarm_model.py``) and concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
import random
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
import redis

from tests.alarm_model import AlertModel, state_of
from workers.alarms.events import parse_event
from workers.alarms.state import AlertStore, alert_id
from workers.keys import alarm_key

B = 1_700_000_000_000  # a base event time in epoch milliseconds
TTL = 3600


def event(
    n: int,
    t: int,
    status: str = "ABNORMAL",
    severity: int = 2,
    dims: dict[str, str] | None = None,
    event_id: str | None = None,
    record: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A normalised event as the parse stage hands it to build (record id and cluster set)."""
    raw = {
        "event_id": event_id or f"e{n}",
        "alert_name": "cpu high",
        "severity": severity,
        "status": status,
        "time": t,
        "dimensions": {"host": "h1"} if dims is None else dims,
        **extra,
    }
    parsed = parse_event(raw, now_ms=B + 10**9, max_future_ms=0)
    parsed["record_id"] = f"test/events/0/{n if record is None else record}"
    parsed["cluster"] = "test"
    return parsed


FP = event(0, B)["fingerprint"]


def alert(**state: Any) -> dict[str, Any]:
    """The full alert of fingerprint ``FP`` (host h1) with ``state``."""
    return {
        "alert_name": "cpu high",
        "fingerprint": FP,
        "dimensions": {"host": "h1"},
        "target": None,
        "description": None,
        "metric": None,
        "cluster": "test",
        "strategy_id": None,
        "bk_biz_id": None,
        "closed_by": None,
        **state,
    }


@pytest.fixture
def store(redis_client: redis.Redis, key_prefix: str) -> AlertStore:
    return AlertStore(redis_client, key_prefix, TTL)


def outcomes(store: AlertStore, events: Sequence[dict[str, Any]]) -> list[str]:
    return [a.outcome for a in store.apply(events)]


def raw_alerts(client: redis.Redis, prefix: str, fps: Sequence[str]) -> list[Any]:
    """The alerts' Redis hashes as stored (``{}`` for none)."""
    return [client.hgetall(alarm_key(prefix, "alert", fp)) for fp in fps]


def index(client: redis.Redis, prefix: str) -> list[Any]:
    return list(client.zrange(alarm_key(prefix, "alerts"), 0, -1, withscores=True))


# -- lifecycle -----------------------------------------------------------------------------------


def test_open_update_recover_quiet_close_then_a_new_alert(store: AlertStore) -> None:
    # Arrange
    first_id, second_id = alert_id(FP, "test/events/0/1"), alert_id(FP, "test/events/0/5")

    # Act
    opened = store.apply([event(1, B, severity=2)])
    updated = store.apply([event(2, B + 5000, severity=1), event(3, B + 3000, severity=3)])
    recovered = store.apply([event(4, B + 6000, "RECOVERED")])
    quiet = store.close_quiet(cutoff_ms=B + 6001)
    reopened = store.apply([event(5, B + 20_000, severity=3)])

    # Assert
    assert [(a.record_id, a.outcome) for a in opened] == [("test/events/0/1", "opened")]
    assert opened[0].alert == alert(
        id=first_id, status="ABNORMAL", first_time=B, last_time=B, last_change=B, count=1,
        severity=2, version=1,
    )  # fmt: skip
    assert [a.outcome for a in updated] == ["updated", "updated"]
    assert updated[1].alert == alert(
        id=first_id, status="ABNORMAL", first_time=B, last_time=B + 5000, last_change=B,
        count=3, severity=1, version=3,
    )  # fmt: skip
    assert recovered[0].alert == alert(
        id=first_id, status="RECOVERED", first_time=B, last_time=B + 6000,
        last_change=B + 6000, count=3, severity=1, version=4,
    )  # fmt: skip
    assert quiet == [
        alert(
            id=first_id, status="CLOSED", first_time=B, last_time=B + 6000,
            last_change=B + 6000, count=3, severity=1, version=5, closed_by="quiet",
        )
    ]  # fmt: skip
    assert [a.outcome for a in reopened] == ["opened"]
    assert reopened[0].alert == alert(
        id=second_id, status="ABNORMAL", first_time=B + 20_000, last_time=B + 20_000,
        last_change=B + 20_000, count=1, severity=3, version=6,
    )  # fmt: skip
    assert store.get(FP) == reopened[0].alert
    assert second_id != first_id


def test_an_alert_is_a_redis_hash_with_its_descriptive_fields_as_json_meta(
    store: AlertStore, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Act
    store.apply([event(1, B, metric="cpu.load", strategy_id=7)])
    store.apply([event(2, B + 10, "CLOSED")])

    # Assert
    key = alarm_key(key_prefix, "alert", FP)
    assert redis_client.type(key) == b"hash"
    stored: dict[bytes, bytes] = redis_client.hgetall(key)  # type: ignore[assignment]
    raw = {k.decode(): v.decode() for k, v in stored.items()}
    meta = json.loads(raw.pop("meta"))
    assert raw == {
        "id": alert_id(FP, "test/events/0/1"), "status": "CLOSED", "count": "1",
        "severity": "2", "first_time": str(B), "last_time": str(B), "last_change": str(B + 10),
        "version": "2", "closed_by": "event",
    }  # fmt: skip
    assert meta == {
        "alert_name": "cpu high", "fingerprint": FP, "dimensions": {"host": "h1"},
        "target": None, "description": None, "metric": "cpu.load", "cluster": "test",
        "strategy_id": 7, "bk_biz_id": None,
    }  # fmt: skip
    assert store.get(FP) == {**meta, **raw, "count": 1, "severity": 2, "first_time": B,
                             "last_time": B, "last_change": B + 10, "version": 2}  # fmt: skip


def test_get_of_an_unknown_fingerprint_is_none(store: AlertStore) -> None:
    # Act / Assert
    assert store.get("0" * 40) is None


def test_an_open_alert_has_no_closed_by(store: AlertStore) -> None:
    # Arrange
    store.apply([event(1, B), event(2, B + 10, "CLOSED"), event(3, B + 20)])

    # Act
    reopened = store.get(FP)

    # Assert
    assert reopened is not None
    assert (reopened["status"], reopened["closed_by"], reopened["version"]) == ("ABNORMAL", None, 3)


def test_a_recovered_alert_turns_abnormal_again(store: AlertStore) -> None:
    # Arrange
    store.apply([event(1, B), event(2, B + 10, "RECOVERED")])

    # Act
    applied = store.apply([event(3, B + 20, severity=3)])

    # Assert
    assert [a.outcome for a in applied] == ["updated"]
    assert state_of(store.get(FP) or {}) == {
        "id": alert_id(FP, "test/events/0/1"), "status": "ABNORMAL", "count": 2, "severity": 2,
        "first_time": B, "last_time": B + 20, "last_change": B + 20, "version": 3,
        "closed_by": None,
    }  # fmt: skip


def test_a_closed_event_closes_the_alert(store: AlertStore) -> None:
    # Arrange
    store.apply([event(1, B), event(2, B + 100)])

    # Act
    applied = store.apply([event(3, B + 50, "CLOSED")])

    # Assert
    assert [a.outcome for a in applied] == ["closed"]
    assert applied[0].alert == alert(
        id=alert_id(FP, "test/events/0/1"), status="CLOSED", first_time=B, last_time=B + 100,
        last_change=B + 50, count=2, severity=2, version=3, closed_by="event",
    )  # fmt: skip
    assert store.get(FP) == applied[0].alert


@pytest.mark.parametrize("status", ["RECOVERED", "CLOSED"])
def test_recovered_or_closed_without_an_alert_is_ignored(
    store: AlertStore, redis_client: redis.Redis, key_prefix: str, status: str
) -> None:
    # Act
    applied = store.apply([event(1, B, status)])

    # Assert
    assert [(a.outcome, a.alert) for a in applied] == [("ignored", None)]
    assert store.get(FP) is None
    assert redis_client.exists(alarm_key(key_prefix, "alert", FP)) == 0


def test_a_second_recovery_is_ignored(store: AlertStore) -> None:
    # Arrange
    store.apply([event(1, B), event(2, B + 10, "RECOVERED")])
    before = store.get(FP)

    # Act
    applied = store.apply([event(3, B + 20, "RECOVERED")])

    # Assert
    assert [(a.outcome, a.alert) for a in applied] == [("ignored", None)]
    assert store.get(FP) == before


# -- out-of-order input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "late", "outcome"),
    [
        pytest.param(
            [(1, B, "ABNORMAL"), (2, B + 10, "RECOVERED")], (3, B + 5, "ABNORMAL"), "stale",
            id="older-abnormal-does-not-flip-recovered",
        ),
        pytest.param(
            [(1, B, "ABNORMAL"), (2, B + 10, "CLOSED")], (3, B + 5, "ABNORMAL"), "stale",
            id="older-abnormal-does-not-reopen-closed",
        ),
        pytest.param(
            [(1, B, "ABNORMAL"), (2, B + 10, "CLOSED")], (3, B + 10, "ABNORMAL"), "stale",
            id="equal-time-abnormal-does-not-reopen-closed",
        ),
        pytest.param(
            [(1, B, "ABNORMAL"), (2, B + 10, "CLOSED")], (3, B + 5, "RECOVERED"), "stale",
            id="older-recovered-for-closed",
        ),
        pytest.param(
            [(1, B, "ABNORMAL"), (2, B + 10, "CLOSED")], (3, B + 11, "RECOVERED"), "ignored",
            id="newer-recovered-for-closed",
        ),
        pytest.param(
            [(1, B, "ABNORMAL"), (2, B + 10, "RECOVERED"), (3, B + 20, "ABNORMAL")],
            (4, B + 15, "RECOVERED"), "stale",
            id="older-recovered-does-not-flip-reopened",
        ),
        pytest.param(
            [(1, B + 10, "ABNORMAL")], (2, B + 5, "ABNORMAL"), "stale",
            id="abnormal-older-than-the-opening-event",
        ),
        pytest.param(
            [(1, B + 10, "ABNORMAL")], (2, B + 5, "CLOSED"), "stale",
            id="close-older-than-the-opening-event",
        ),
    ],
)  # fmt: skip
def test_an_out_of_order_event_changes_nothing(
    store: AlertStore,
    redis_client: redis.Redis,
    key_prefix: str,
    setup: list[tuple[int, int, str]],
    late: tuple[int, int, str],
    outcome: str,
) -> None:
    # Arrange
    store.apply([event(n, t, status) for n, t, status in setup])
    before = raw_alerts(redis_client, key_prefix, [FP])

    # Act
    applied = store.apply([event(late[0], late[1], late[2])])

    # Assert
    assert [(a.outcome, a.alert) for a in applied] == [(outcome, None)]
    assert raw_alerts(redis_client, key_prefix, [FP]) == before


def test_an_older_abnormal_still_counts_while_not_older_than_last_change(
    store: AlertStore,
) -> None:
    # Arrange: opened at B+10, recovered at B+30, abnormal again at B+40 (last_change B+40)
    store.apply([event(1, B + 10), event(2, B + 50)])

    # Act
    same_as_open = store.apply([event(3, B + 10, severity=1)])
    between = store.apply([event(4, B + 20)])
    store.apply([event(5, B + 60, "RECOVERED"), event(6, B + 70)])
    older_than_change = store.apply([event(7, B + 65)])
    equal_to_change = store.apply([event(8, B + 70)])

    # Assert
    assert [a.outcome for a in same_as_open + between] == ["updated", "updated"]
    assert [a.outcome for a in older_than_change] == ["stale"]
    assert [a.outcome for a in equal_to_change] == ["updated"]
    assert state_of(store.get(FP) or {}) == {
        "id": alert_id(FP, "test/events/0/1"), "status": "ABNORMAL", "count": 6, "severity": 1,
        "first_time": B + 10, "last_time": B + 70, "last_change": B + 70, "version": 7,
        "closed_by": None,
    }  # fmt: skip


def test_one_fingerprint_from_many_dimension_orders(store: AlertStore) -> None:
    # Arrange
    orders = [
        {"host": "h1", "disk": "/", "dc": "eu"},
        {"dc": "eu", "host": "h1", "disk": "/"},
        {"disk": "/", "dc": "eu", "host": "h1"},
    ]
    events = [event(n, B + n, dims=dims) for n, dims in enumerate(orders)]

    # Act
    applied = store.apply(events)

    # Assert
    assert len({e["fingerprint"] for e in events}) == 1
    assert [a.outcome for a in applied] == ["opened", "updated", "updated"]
    assert applied[2].alert is not None
    assert applied[2].alert["count"] == 3
    assert applied[2].alert["dimensions"] == {"host": "h1", "disk": "/", "dc": "eu"}


@pytest.mark.parametrize(
    ("strategy_id", "bk_biz_id"),
    [
        pytest.param(123_456_789_012_345, 2**53 - 1, id="15-digits-and-2^53-1"),
        pytest.param(2**53 + 1, -(2**63), id="past-double-precision"),
        pytest.param(10**30 + 7, 2**64 + 1, id="past-64-bits"),
    ],
)
def test_integer_fields_keep_their_exact_values(
    store: AlertStore, redis_client: redis.Redis, key_prefix: str, strategy_id: int, bk_biz_id: int
) -> None:
    # Arrange
    big = event(1, B, strategy_id=strategy_id, bk_biz_id=bk_biz_id)

    # Act
    applied = store.apply([big])
    replayed = store.apply([big])
    updated = store.apply([event(2, B + 10)])
    stored = store.get(FP)
    meta = redis_client.hget(alarm_key(key_prefix, "alert", FP), "meta")

    # Assert
    ids = (strategy_id, bk_biz_id)
    for alert in (applied[0].alert, replayed[0].alert, updated[0].alert, stored):
        assert alert is not None
        assert (alert["strategy_id"], alert["bk_biz_id"]) == ids
        assert type(alert["strategy_id"]) is int
        assert type(alert["bk_biz_id"]) is int
    assert [a.outcome for a in replayed] == ["replayed"]
    assert meta is not None
    assert f'"strategy_id": {strategy_id}'.encode() in meta
    assert f'"bk_biz_id": {bk_biz_id}'.encode() in meta


# -- idempotence ---------------------------------------------------------------------------------


def test_the_same_batch_twice_replays_its_changes_and_leaves_identical_state(
    store: AlertStore, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Arrange
    batch = [
        event(n, B + 100 * n, status, severity=1 + n % 3, dims={"host": f"h{n % 3}"})
        for n, status in enumerate(
            ["ABNORMAL", "ABNORMAL", "ABNORMAL", "ABNORMAL", "RECOVERED", "CLOSED", "ABNORMAL"]
            + ["RECOVERED", "ABNORMAL", "ABNORMAL"]
        )
    ]
    fps = sorted({e["fingerprint"] for e in batch})
    first = store.apply(batch)
    state = raw_alerts(redis_client, key_prefix, fps)
    listed = index(redis_client, key_prefix)

    # Act
    second = store.apply(batch)
    third = store.apply(batch)

    # Assert
    changes = ["opened", "opened", "opened", "updated", "recovered", "closed", "updated", "",
               "opened", "updated"]  # fmt: skip
    assert [a.outcome for a in first] == [c or "ignored" for c in changes]
    assert [a.change for a in first] == changes
    for again in (second, third):
        assert [a.outcome for a in again] == ["replayed" if c else "duplicate" for c in changes]
        assert [(a.record_id, a.change, a.alert) for a in again] == [
            (a.record_id, a.change, a.alert) for a in first
        ]
    assert raw_alerts(redis_client, key_prefix, fps) == state
    assert {} not in state
    assert index(redis_client, key_prefix) == listed


def test_a_redelivered_record_or_a_repeated_event_id_is_a_duplicate(store: AlertStore) -> None:
    # Arrange
    store.apply([event(1, B), event(2, B + 10)])

    # Act
    redelivered = outcomes(store, [event(2, B + 10)])
    same_event_new_record = outcomes(store, [event(3, B + 20, event_id="e2")])
    that_record_again = outcomes(store, [event(3, B + 20, event_id="e2")])
    stale_then_again = outcomes(
        store, [event(4, B - 10), event(4, B - 10, record=5), event(4, B - 10)]
    )
    ignored_then_again = outcomes(
        store, [event(6, B + 30, "RECOVERED"), event(7, B + 40, "RECOVERED")] * 2
    )

    # Assert
    assert redelivered == ["replayed"]
    assert same_event_new_record == ["duplicate"]
    assert that_record_again == ["duplicate"]
    assert stale_then_again == ["stale", "duplicate", "duplicate"]
    assert ignored_then_again == ["recovered", "ignored", "replayed", "duplicate"]
    assert (store.get(FP) or {})["count"] == 2


def test_a_replayed_record_reports_its_own_change_and_the_alert_as_it_made_it(
    store: AlertStore, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Arrange
    first = store.apply([event(1, B), event(2, B + 10, severity=1), event(3, B + 20, "CLOSED")])
    store.apply([event(4, B + 30, severity=3)])  # a new alert after the close
    state = raw_alerts(redis_client, key_prefix, [FP])

    # Act
    replayed = store.apply([event(2, B + 10, severity=1), event(1, B), event(3, B + 20, "CLOSED")])

    # Assert
    assert [(a.outcome, a.change) for a in replayed] == [
        ("replayed", "updated"), ("replayed", "opened"), ("replayed", "closed")
    ]  # fmt: skip
    assert [a.alert for a in replayed] == [first[1].alert, first[0].alert, first[2].alert]
    assert first[0].alert == alert(
        id=alert_id(FP, "test/events/0/1"), status="ABNORMAL", first_time=B, last_time=B,
        last_change=B, count=1, severity=2, version=1, closed_by=None,
    )  # fmt: skip
    assert replayed[2].alert is not None
    assert (replayed[2].alert["closed_by"], replayed[2].alert["version"]) == ("event", 3)
    assert raw_alerts(redis_client, key_prefix, [FP]) == state
    assert (store.get(FP) or {})["version"] == 4


def test_a_fresh_apply_reports_its_change_and_no_change_for_the_rest(store: AlertStore) -> None:
    # Act
    applied = store.apply(
        [event(1, B), event(2, B + 5, "RECOVERED"), event(3, B + 1), event(4, B + 9, "RECOVERED")]
    )

    # Assert
    assert [(a.outcome, a.change, a.alert is None) for a in applied] == [
        ("opened", "opened", False), ("recovered", "recovered", False), ("stale", "", True),
        ("ignored", "", True),
    ]  # fmt: skip


def test_applied_markers_expire_after_the_dedupe_ttl(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    # Arrange
    store = AlertStore(redis_client, key_prefix, 120)

    # Act
    store.apply([event(1, B)])

    # Assert
    record = redis_client.ttl(alarm_key(key_prefix, "applied", FP, "r:test/events/0/1"))
    ident = redis_client.ttl(alarm_key(key_prefix, "applied", FP, "e:e1"))
    assert 115 <= record <= 120
    assert 115 <= ident <= 120
    assert redis_client.ttl(alarm_key(key_prefix, "alert", FP)) == -1


# -- the reference model -------------------------------------------------------------------------


def random_records(
    rng: random.Random, total: int, fingerprints: int
) -> list[tuple[float, dict[str, Any]]]:
    """``total`` records with their arrival times, in arrival order: originals, re-sent
    records (same record id) and repeated event ids (same content, new record id).

    Each fingerprint has two 100 s bursts of events, on a 1 s grid so that equal times
    happen. Records arrive roughly in time order (a jitter of about 3 s); one in 20 arrives
    10 to 200 s late, and repeats up to 60 s after the first copy."""
    bursts = []
    for _ in range(fingerprints):
        first = rng.randrange(300)
        bursts.append((first, first + 100 + rng.randrange(40, 150)))
    keyed: list[tuple[float, dict[str, Any]]] = []
    offset = 0
    while len(keyed) < total:
        roll = rng.random()
        if keyed and roll < 0.16:
            at, again = rng.choice(keyed)
            again = dict(again)
            if roll < 0.08:  # the same event in a new record; otherwise the same record again
                again["record_id"] = f"test/events/0/{offset}"
                offset += 1
            keyed.append((at + rng.uniform(0, 60_000), again))
            continue
        n = rng.randrange(fingerprints)
        t = B + 1000 * (rng.choice(bursts[n]) + rng.randrange(100))
        status = rng.choices(["ABNORMAL", "RECOVERED", "CLOSED"], [87, 10, 3])[0]
        record = event(
            offset,
            t,
            status,
            severity=rng.randint(1, 3),
            dims={"host": f"h{n}", "dc": "eu" if n % 2 else "us"},
            event_id=f"ev-{offset}",
        )
        late = rng.random() < 0.05
        at = t + rng.uniform(10_000, 200_000) if late else rng.gauss(t, 3000)
        keyed.append((at, record))
        offset += 1
    keyed.sort(key=lambda item: item[0])
    return keyed


def test_random_events_give_exactly_the_reference_model_states(store: AlertStore) -> None:
    # Arrange
    rng = random.Random(20240611)
    arrivals = random_records(rng, 3000, 30)
    model = AlertModel()
    got: list[tuple[str, str, dict[str, Any] | None]] = []
    expected: list[tuple[str, str, dict[str, Any] | None]] = []
    swept: list[list[str]] = []
    swept_by_model: list[list[str]] = []
    returned: dict[tuple[str, int], dict[str, Any]] = {}  # (id, version) → state as closed

    # Act: random-sized batches; now and then a sweep (30 s quiet) a second after the last
    # record's arrival
    i = 0
    while i < len(arrivals):
        size = rng.randint(1, 60)
        batch = [record for _, record in arrivals[i : i + size]]
        now = int(arrivals[i : i + size][-1][0]) + 1000
        i += len(batch)
        got.extend(
            (a.outcome, a.change, state_of(a.alert) if a.alert else None)
            for a in store.apply(batch)
        )
        expected.extend(model.apply_change(e) for e in batch)
        if rng.random() < 0.4:
            closed = store.close_quiet(cutoff_ms=now - 30_000)
            store.forget_closed(closed, now - 30_000)  # as the sweep does once published
            # A close returned before comes back unchanged when a late event re-lists its
            # fingerprint (the xfail test below); the sweep skips it as already published.
            for a in closed:
                if (a["id"], a["version"]) in returned:
                    assert state_of(a) == returned[a["id"], a["version"]]
                    assert state_of(a) == state_of(store.get(a["fingerprint"]) or {})
            fresh = [a for a in closed if (a["id"], a["version"]) not in returned]
            returned.update({(a["id"], a["version"]): state_of(a) for a in fresh})
            swept.append(sorted(a["fingerprint"] for a in fresh))
            swept_by_model.append(model.close_quiet(now - 30_000))

    # Assert
    states = model.states()
    assert got == expected
    assert swept == swept_by_model
    assert {fp: state_of(store.get(fp) or {}) for fp in states} == states
    assert len(states) == 30
    assert {outcome for outcome, _, _ in got} == {
        "duplicate", "replayed", "stale", "ignored", "opened", "updated", "recovered", "closed"
    }  # fmt: skip
    assert sum(len(fps) for fps in swept) >= 10  # the sweeps did close alerts
    assert sum(outcome == "opened" for outcome, _, _ in got) > len(states)  # alerts reopened


# -- concurrent writers --------------------------------------------------------------------------


def abnormal_workload(rng: random.Random) -> tuple[list[dict[str, Any]], list[list[Any]]]:
    """Opening events (the earliest time) for 5 fingerprints, and 4 interleaved shares of
    later ABNORMAL records: 600 events, 150 of them sent twice in other records."""
    opening = [event(10_000 + n, B, dims={"host": f"h{n}"}) for n in range(5)]
    later = [
        event(n, B + 1 + rng.randrange(10_000), severity=rng.randint(1, 3),
              dims={"host": f"h{n % 5}"})
        for n in range(600)
    ]  # fmt: skip
    repeats = [dict(e, record_id=f"test/events/1/{k}") for k, e in enumerate(later[:150])]
    records = later + repeats
    rng.shuffle(records)
    shares: list[list[Any]] = [[] for _ in range(4)]
    for k in range(0, len(records), 25):
        shares[(k // 25) % 4].append(records[k : k + 25])
    return opening, shares


def expected_counts(opening: list[dict[str, Any]], shares: list[list[Any]]) -> dict[str, int]:
    ids: dict[str, set[str]] = {e["fingerprint"]: {e["event_id"]} for e in opening}
    for share in shares:
        for batch in share:
            for e in batch:
                ids[e["fingerprint"]].add(e["event_id"])
    return {fp: len(seen) for fp, seen in ids.items()}


def apply_share(url: str, prefix: str, share: list[Any], start: Any) -> Counter[str]:
    client = redis.Redis.from_url(url)
    try:
        store = AlertStore(client, prefix, TTL)
        start.wait(30)
        return Counter(a.outcome for batch in share for a in store.apply(batch))
    finally:
        client.close()


def _process_main(url: str, prefix: str, share: list[Any], start: Any, out: Any) -> None:
    out.put(dict(apply_share(url, prefix, share, start)))


@pytest.mark.parametrize("workers", ["threads", "processes"])
def test_concurrent_writers_lose_no_update(
    store: AlertStore, redis_url: str, key_prefix: str, workers: str
) -> None:
    # Arrange
    opening, shares = abnormal_workload(random.Random(7))
    store.apply(opening)
    totals: Counter[str] = Counter()

    # Act
    if workers == "threads":
        barrier = threading.Barrier(4)
        results: list[Counter[str]] = []
        threads = [
            threading.Thread(
                target=lambda s=share: results.append(
                    apply_share(redis_url, key_prefix, s, barrier)
                )
            )
            for share in shares
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        for result in results:
            totals.update(result)
    else:
        ctx = multiprocessing.get_context("fork")
        ctx_barrier = ctx.Barrier(4)
        queue = ctx.Queue()
        procs = [
            ctx.Process(target=_process_main, args=(redis_url, key_prefix, s, ctx_barrier, queue))
            for s in shares
        ]
        for proc in procs:
            proc.start()
        for _ in procs:
            totals.update(queue.get(timeout=60))
        for proc in procs:
            proc.join(30)

    # Assert
    counts = {fp: (store.get(fp) or {}).get("count") for fp in expected_counts(opening, shares)}
    assert counts == expected_counts(opening, shares)
    assert sum(counts.values()) == 605
    assert totals == Counter({"updated": 600, "duplicate": 150})


# -- the quiet-period sweep ----------------------------------------------------------------------


def test_close_quiet_skips_an_alert_whose_last_time_moved_past_the_cutoff(
    store: AlertStore, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Arrange: the sweep read the index before the last event landed (index rewound to B)
    store.apply([event(1, B), event(2, B + 60_000)])
    redis_client.zadd(alarm_key(key_prefix, "alerts"), {FP: B}, xx=True)
    before = store.get(FP)

    # Act
    early = store.close_quiet(cutoff_ms=B + 30_000)
    after_early = store.get(FP)
    at_last_time = store.close_quiet(cutoff_ms=B + 60_000)
    later = store.close_quiet(cutoff_ms=B + 60_001)

    # Assert
    assert early == []
    assert at_last_time == []
    assert after_early == before
    assert [(a["status"], a["closed_by"], a["last_change"], a["version"]) for a in later] == [
        ("CLOSED", "quiet", B + 60_000, 3)
    ]
    assert index(redis_client, key_prefix) == [(FP.encode(), float(B))]
    store.forget_closed(later, B + 60_001)
    assert index(redis_client, key_prefix) == []


def test_close_quiet_drops_event_closed_and_missing_alerts_from_the_index(
    store: AlertStore, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Arrange: one alert closed by an event, one fingerprint with no alert (a lone recovery)
    closed_fp = event(1, B, dims={"host": "closed"})["fingerprint"]
    none_fp = event(3, B, dims={"host": "none"})["fingerprint"]
    busy_fp = event(4, B, dims={"host": "busy"})["fingerprint"]
    store.apply(
        [event(1, B, dims={"host": "closed"}), event(2, B + 5, "CLOSED", dims={"host": "closed"})]
    )
    store.apply([event(3, B, "RECOVERED", dims={"host": "none"})])
    store.apply([event(4, B + 50_000, dims={"host": "busy"})])
    closed_before = store.get(closed_fp)

    # Act
    closed = store.close_quiet(cutoff_ms=B + 10_000)

    # Assert
    assert closed == []
    assert index(redis_client, key_prefix) == [(busy_fp.encode(), float(B + 50_000))]
    assert store.get(closed_fp) == closed_before
    assert store.get(none_fp) is None


def test_a_quiet_close_is_returned_unchanged_by_every_sweep_until_forgotten(
    store: AlertStore, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Arrange
    quiet_fp = event(1, B, dims={"host": "quiet"})["fingerprint"]
    busy_fp = event(2, B, dims={"host": "busy"})["fingerprint"]
    store.apply([event(1, B, dims={"host": "quiet"}), event(2, B + 9, dims={"host": "busy"})])
    store.apply([event(3, B + 50_000, dims={"host": "busy"})])

    # Act
    closed = store.close_quiet(cutoff_ms=B + 10_000)
    again = store.close_quiet(cutoff_ms=B + 10_000)
    later = store.close_quiet(cutoff_ms=B + 20_000)
    listed = index(redis_client, key_prefix)
    store.forget_closed(closed, B + 10_000)
    forgotten = store.close_quiet(cutoff_ms=B + 20_000)

    # Assert
    assert [(a["fingerprint"], a["closed_by"], a["version"]) for a in closed] == [
        (quiet_fp, "quiet", 2)
    ]
    assert again == later == closed
    assert listed == [(quiet_fp.encode(), float(B)), (busy_fp.encode(), float(B + 50_000))]
    assert forgotten == []
    assert index(redis_client, key_prefix) == [(busy_fp.encode(), float(B + 50_000))]
    assert store.get(quiet_fp) == closed[0]


@pytest.mark.parametrize(
    ("forget_at", "kept"),
    [
        pytest.param(B, True, id="score-equal-to-the-cutoff-is-kept"),
        pytest.param(B + 1, False, id="score-below-the-cutoff-is-dropped"),
    ],
)
def test_forget_closed_drops_only_scores_below_its_cutoff(
    store: AlertStore, redis_client: redis.Redis, key_prefix: str, forget_at: int, kept: bool
) -> None:
    # Arrange
    store.apply([event(1, B)])
    closed = store.close_quiet(cutoff_ms=B + 1)

    # Act
    store.forget_closed(closed, forget_at)

    # Assert
    assert [a["closed_by"] for a in closed] == ["quiet"]
    assert index(redis_client, key_prefix) == ([(FP.encode(), float(B))] if kept else [])


def test_forget_closed_keeps_a_fingerprint_that_a_newer_event_reopened(
    store: AlertStore, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Arrange: closed by a sweep, then a newer event opens a new alert before the forget
    store.apply([event(1, B)])
    closed = store.close_quiet(cutoff_ms=B + 10_000)
    reopened = store.apply([event(2, B + 20_000)])

    # Act
    store.forget_closed(closed, B + 10_000)
    swept = store.close_quiet(cutoff_ms=B + 10_000)

    # Assert
    assert [a.outcome for a in reopened] == ["opened"]
    assert index(redis_client, key_prefix) == [(FP.encode(), float(B + 20_000))]
    assert swept == []
    assert store.get(FP) == reopened[0].alert
    assert (store.get(FP) or {})["id"] != closed[0]["id"]


def test_forget_closed_keeps_a_quiet_close_whose_score_a_later_event_moved(
    store: AlertStore, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Arrange: a recovery after the close changes nothing but moves the index score
    store.apply([event(1, B)])
    closed = store.close_quiet(cutoff_ms=B + 10_000)
    ignored = store.apply([event(2, B + 20_000, "RECOVERED")])

    # Act
    store.forget_closed(closed, B + 10_000)
    listed = index(redis_client, key_prefix)
    not_yet = store.close_quiet(cutoff_ms=B + 20_000)
    again = store.close_quiet(cutoff_ms=B + 20_001)
    store.forget_closed(again, B + 20_001)

    # Assert
    assert [a.outcome for a in ignored] == ["ignored"]
    assert listed == [(FP.encode(), float(B + 20_000))]
    assert not_yet == []
    assert again == closed
    assert index(redis_client, key_prefix) == []


def test_forget_closed_of_nothing_or_of_unlisted_fingerprints_changes_nothing(
    store: AlertStore, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Arrange
    store.apply([event(1, B)])
    listed = index(redis_client, key_prefix)

    # Act
    store.forget_closed([], B + 10)
    store.forget_closed([{"fingerprint": "0" * 40}], B + 10)

    # Assert
    assert index(redis_client, key_prefix) == listed == [(FP.encode(), float(B))]
    assert (store.get(FP) or {})["status"] == "ABNORMAL"


@pytest.mark.parametrize(
    ("late", "status", "outcome"),
    [
        pytest.param(B - 5000, "ABNORMAL", "stale", id="stale-abnormal"),
        pytest.param(B + 5000, "RECOVERED", "ignored", id="ignored-recovery"),
        pytest.param(B + 5000, "CLOSED", "ignored", id="ignored-close"),
    ],
)
def test_a_forgotten_quiet_close_is_not_returned_again_after_a_late_event(
    store: AlertStore, late: int, status: str, outcome: str
) -> None:
    # Arrange: closed, published and forgotten, as a sweep does
    store.apply([event(1, B)])
    closed = store.close_quiet(cutoff_ms=B + 10_000)
    store.mark_published(
        [{"change": "closed", "change_id": f"{a['id']}:{a['version']}", "alert": a} for a in closed]
    )
    store.forget_closed(closed, B + 10_000)
    applied = store.apply([event(2, late, status)])

    # Act
    again = store.close_quiet(cutoff_ms=B + 20_000)

    # Assert
    assert [a.outcome for a in applied] == [outcome]
    assert [(a["closed_by"], a["version"]) for a in closed] == [("quiet", 2)]
    assert again == []


def test_close_quiet_closes_the_oldest_first_up_to_the_limit(store: AlertStore) -> None:
    # Arrange
    events = [event(n, B + n, dims={"host": f"h{n}"}) for n in range(3)]
    store.apply(events)

    # Act: unpublished closes come first again, and take their share of the limit
    first = store.close_quiet(cutoff_ms=B + 100, limit=2)
    unforgotten = store.close_quiet(cutoff_ms=B + 100, limit=2)
    store.forget_closed(first, B + 100)
    rest = store.close_quiet(cutoff_ms=B + 100, limit=2)

    # Assert
    assert [a["fingerprint"] for a in first] == [e["fingerprint"] for e in events[:2]]
    assert unforgotten == first
    assert [a["fingerprint"] for a in rest] == [events[2]["fingerprint"]]
    assert (store.get(events[2]["fingerprint"]) or {})["status"] == "CLOSED"


@pytest.mark.parametrize(
    ("status", "last_time", "last_change"),
    [
        pytest.param("ABNORMAL", B + 40, B, id="abnormal"),
        pytest.param("RECOVERED", B + 40, B + 40, id="recovered"),
    ],
)
def test_a_quiet_close_is_as_of_the_last_event(
    store: AlertStore, status: str, last_time: int, last_change: int
) -> None:
    # Arrange
    store.apply([event(1, B), event(2, B + 40, status)])
    before = store.get(FP) or {}

    # Act
    closed = store.close_quiet(cutoff_ms=B + 1_000_000)

    # Assert
    assert (before["last_time"], before["last_change"]) == (last_time, last_change)
    assert closed == [
        {**before, "status": "CLOSED", "closed_by": "quiet", "last_change": B + 40,
         "version": before["version"] + 1}
    ]  # fmt: skip
    assert store.get(FP) == closed[0]


def test_after_a_quiet_close_a_newer_event_opens_a_new_alert_and_an_older_one_is_stale(
    store: AlertStore,
) -> None:
    # Arrange
    store.apply([event(1, B), event(2, B + 40), event(3, B + 20, "RECOVERED")])
    closed = store.close_quiet(cutoff_ms=B + 100_000)

    # Act
    older = store.apply([event(4, B + 30), event(5, B + 40)])
    not_abnormal = store.apply([event(6, B + 50, "RECOVERED"), event(7, B + 60, "CLOSED")])
    newer = store.apply([event(8, B + 41, severity=3)])

    # Assert
    assert [(a["status"], a["last_change"], a["version"]) for a in closed] == [
        ("CLOSED", B + 40, 4)
    ]
    assert [a.outcome for a in older] == ["stale", "stale"]
    assert [a.outcome for a in not_abnormal] == ["ignored", "ignored"]
    assert [a.outcome for a in newer] == ["opened"]
    assert newer[0].alert == alert(
        id=alert_id(FP, "test/events/0/8"), status="ABNORMAL", first_time=B + 41,
        last_time=B + 41, last_change=B + 41, count=1, severity=3, version=5,
    )  # fmt: skip
    assert newer[0].alert["id"] != closed[0]["id"]


def test_the_model_agrees_on_quiet_closes_and_what_follows(store: AlertStore) -> None:
    # Arrange
    model = AlertModel()
    first = [event(1, B), event(2, B + 40), event(3, B + 20, "RECOVERED")]
    later = [event(4, B + 30), event(5, B + 40), event(6, B + 41, severity=3), event(2, B + 40)]

    # Act
    got = [a.outcome for a in store.apply(first)]
    expected = [model.apply(e) for e in first]
    swept = [a["fingerprint"] for a in store.close_quiet(B + 100)]
    swept_by_model = model.close_quiet(B + 100)
    got += [a.outcome for a in store.apply(later)]
    expected += [model.apply(e) for e in later]

    # Assert
    assert got == expected == [
        "opened", "updated", "recovered", "stale", "stale", "opened", "replayed"
    ]  # fmt: skip
    assert swept == swept_by_model == [FP]
    assert state_of(store.get(FP) or {}) == model.states()[FP]


# -- statistics ----------------------------------------------------------------------------------


def test_count_adds_outcomes_and_extras_and_stats_reads_them(store: AlertStore) -> None:
    # Arrange
    empty = store.stats()

    # Act
    store.count(["opened", "updated", "opened"], {"published": 3})
    store.count([], None)
    store.count(iter(["updated"]), {"published": 1, "invalid": 2})

    # Assert
    assert empty == {}
    assert store.stats() == {"opened": 2, "updated": 2, "published": 4, "invalid": 2}
