"""``AlertStore`` on a real Redis: an alert's lifecycle (opened, updated, recovered, closed,
reopened), out-of-order input that changes nothing, and the outcome counters."""

from __future__ import annotations

import json

import pytest
import redis

from tests.alarm_model import state_of
from tests.integration.alarm_state_support import FP, B, alert, event, raw_alerts
from workers.alarms.state import AlertStore, alert_id
from workers.state.keys import alarm_key

# -- lifecycle -----------------------------------------------------------------------------------


def test_open_update_recover_quiet_close_then_a_new_alert(alert_store: AlertStore) -> None:
    # Arrange
    first_id, second_id = alert_id(FP, "test/events/0/1"), alert_id(FP, "test/events/0/5")

    # Act
    opened = alert_store.apply([event(1, B, severity=2)])
    updated = alert_store.apply([event(2, B + 5000, severity=1), event(3, B + 3000, severity=3)])
    recovered = alert_store.apply([event(4, B + 6000, "RECOVERED")])
    quiet = alert_store.close_quiet(cutoff_ms=B + 6001)
    reopened = alert_store.apply([event(5, B + 20_000, severity=3)])

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
    assert alert_store.get(FP) == reopened[0].alert
    assert second_id != first_id


def test_an_alert_is_a_redis_hash_with_its_descriptive_fields_as_json_meta(
    alert_store: AlertStore, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Act
    alert_store.apply([event(1, B, metric="cpu.load", strategy_id=7)])
    alert_store.apply([event(2, B + 10, "CLOSED")])

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
    assert alert_store.get(FP) == {**meta, **raw, "count": 1, "severity": 2, "first_time": B,
                             "last_time": B, "last_change": B + 10, "version": 2}  # fmt: skip


def test_get_of_an_unknown_fingerprint_is_none(alert_store: AlertStore) -> None:
    # Act / Assert
    assert alert_store.get("0" * 40) is None


def test_an_open_alert_has_no_closed_by(alert_store: AlertStore) -> None:
    # Arrange
    alert_store.apply([event(1, B), event(2, B + 10, "CLOSED"), event(3, B + 20)])

    # Act
    reopened = alert_store.get(FP)

    # Assert
    assert reopened is not None
    assert (reopened["status"], reopened["closed_by"], reopened["version"]) == ("ABNORMAL", None, 3)


def test_a_recovered_alert_turns_abnormal_again(alert_store: AlertStore) -> None:
    # Arrange
    alert_store.apply([event(1, B), event(2, B + 10, "RECOVERED")])

    # Act
    applied = alert_store.apply([event(3, B + 20, severity=3)])

    # Assert
    assert [a.outcome for a in applied] == ["updated"]
    assert state_of(alert_store.get(FP) or {}) == {
        "id": alert_id(FP, "test/events/0/1"), "status": "ABNORMAL", "count": 2, "severity": 2,
        "first_time": B, "last_time": B + 20, "last_change": B + 20, "version": 3,
        "closed_by": None,
    }  # fmt: skip


def test_a_closed_event_closes_the_alert(alert_store: AlertStore) -> None:
    # Arrange
    alert_store.apply([event(1, B), event(2, B + 100)])

    # Act
    applied = alert_store.apply([event(3, B + 50, "CLOSED")])

    # Assert
    assert [a.outcome for a in applied] == ["closed"]
    assert applied[0].alert == alert(
        id=alert_id(FP, "test/events/0/1"), status="CLOSED", first_time=B, last_time=B + 100,
        last_change=B + 50, count=2, severity=2, version=3, closed_by="event",
    )  # fmt: skip
    assert alert_store.get(FP) == applied[0].alert


@pytest.mark.parametrize("status", ["RECOVERED", "CLOSED"])
def test_recovered_or_closed_without_an_alert_is_ignored(
    alert_store: AlertStore, redis_client: redis.Redis, key_prefix: str, status: str
) -> None:
    # Act
    applied = alert_store.apply([event(1, B, status)])

    # Assert
    assert [(a.outcome, a.alert) for a in applied] == [("ignored", None)]
    assert alert_store.get(FP) is None
    assert redis_client.exists(alarm_key(key_prefix, "alert", FP)) == 0


def test_a_second_recovery_is_ignored(alert_store: AlertStore) -> None:
    # Arrange
    alert_store.apply([event(1, B), event(2, B + 10, "RECOVERED")])
    before = alert_store.get(FP)

    # Act
    applied = alert_store.apply([event(3, B + 20, "RECOVERED")])

    # Assert
    assert [(a.outcome, a.alert) for a in applied] == [("ignored", None)]
    assert alert_store.get(FP) == before


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
    alert_store: AlertStore,
    redis_client: redis.Redis,
    key_prefix: str,
    setup: list[tuple[int, int, str]],
    late: tuple[int, int, str],
    outcome: str,
) -> None:
    # Arrange
    alert_store.apply([event(n, t, status) for n, t, status in setup])
    before = raw_alerts(redis_client, key_prefix, [FP])

    # Act
    applied = alert_store.apply([event(late[0], late[1], late[2])])

    # Assert
    assert [(a.outcome, a.alert) for a in applied] == [(outcome, None)]
    assert raw_alerts(redis_client, key_prefix, [FP]) == before


def test_an_older_abnormal_still_counts_while_not_older_than_last_change(
    alert_store: AlertStore,
) -> None:
    # Arrange: opened at B+10, recovered at B+30, abnormal again at B+40 (last_change B+40)
    alert_store.apply([event(1, B + 10), event(2, B + 50)])

    # Act
    same_as_open = alert_store.apply([event(3, B + 10, severity=1)])
    between = alert_store.apply([event(4, B + 20)])
    alert_store.apply([event(5, B + 60, "RECOVERED"), event(6, B + 70)])
    older_than_change = alert_store.apply([event(7, B + 65)])
    equal_to_change = alert_store.apply([event(8, B + 70)])

    # Assert
    assert [a.outcome for a in same_as_open + between] == ["updated", "updated"]
    assert [a.outcome for a in older_than_change] == ["stale"]
    assert [a.outcome for a in equal_to_change] == ["updated"]
    assert state_of(alert_store.get(FP) or {}) == {
        "id": alert_id(FP, "test/events/0/1"), "status": "ABNORMAL", "count": 6, "severity": 1,
        "first_time": B + 10, "last_time": B + 70, "last_change": B + 70, "version": 7,
        "closed_by": None,
    }  # fmt: skip


def test_one_fingerprint_from_many_dimension_orders(alert_store: AlertStore) -> None:
    # Arrange
    orders = [
        {"host": "h1", "disk": "/", "dc": "eu"},
        {"dc": "eu", "host": "h1", "disk": "/"},
        {"disk": "/", "dc": "eu", "host": "h1"},
    ]
    events = [event(n, B + n, dims=dims) for n, dims in enumerate(orders)]

    # Act
    applied = alert_store.apply(events)

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
    alert_store: AlertStore,
    redis_client: redis.Redis,
    key_prefix: str,
    strategy_id: int,
    bk_biz_id: int,
) -> None:
    # Arrange
    big = event(1, B, strategy_id=strategy_id, bk_biz_id=bk_biz_id)

    # Act
    applied = alert_store.apply([big])
    replayed = alert_store.apply([big])
    updated = alert_store.apply([event(2, B + 10)])
    stored = alert_store.get(FP)
    meta = redis_client.hget(alarm_key(key_prefix, "alert", FP), "meta")

    # Assert
    ids = (strategy_id, bk_biz_id)
    for got in (applied[0].alert, replayed[0].alert, updated[0].alert, stored):
        assert got is not None
        assert (got["strategy_id"], got["bk_biz_id"]) == ids
        assert type(got["strategy_id"]) is int
        assert type(got["bk_biz_id"]) is int
    assert [a.outcome for a in replayed] == ["replayed"]
    assert meta is not None
    stored_meta = json.loads(meta)  # the standard library reads integers exactly
    assert (stored_meta["strategy_id"], stored_meta["bk_biz_id"]) == ids


# -- statistics ----------------------------------------------------------------------------------


def test_count_adds_outcomes_and_extras_and_stats_reads_them(alert_store: AlertStore) -> None:
    # Arrange
    empty = alert_store.stats()

    # Act
    alert_store.count(["opened", "updated", "opened"], {"published": 3})
    alert_store.count([], None)
    alert_store.count(iter(["updated"]), {"published": 1, "invalid": 2})

    # Assert
    assert empty == {}
    assert alert_store.stats() == {"opened": 2, "updated": 2, "published": 4, "invalid": 2}
