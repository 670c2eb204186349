"""``AlertStore`` on a real Redis: the quiet-period sweep (``close_quiet``) and the index of
open alerts it reads, cleaned by ``forget_closed`` only once a close is published."""

from __future__ import annotations

import pytest
import redis

from tests.alarm_model import AlertModel, state_of
from tests.integration.alarm_state_support import FP, B, alert, event, index
from workers.alarms.state import AlertStore, alert_id
from workers.state.keys import alarm_key


def test_close_quiet_skips_an_alert_whose_last_time_moved_past_the_cutoff(
    alert_store: AlertStore, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Arrange: the sweep read the index before the last event landed (index rewound to B)
    alert_store.apply([event(1, B), event(2, B + 60_000)])
    redis_client.zadd(alarm_key(key_prefix, "alerts"), {FP: B}, xx=True)
    before = alert_store.get(FP)

    # Act
    early = alert_store.close_quiet(cutoff_ms=B + 30_000)
    after_early = alert_store.get(FP)
    at_last_time = alert_store.close_quiet(cutoff_ms=B + 60_000)
    later = alert_store.close_quiet(cutoff_ms=B + 60_001)

    # Assert
    assert early == []
    assert at_last_time == []
    assert after_early == before
    assert [(a["status"], a["closed_by"], a["last_change"], a["version"]) for a in later] == [
        ("CLOSED", "quiet", B + 60_000, 3)
    ]
    assert index(redis_client, key_prefix) == [(FP.encode(), float(B))]
    alert_store.forget_closed(later, B + 60_001)
    assert index(redis_client, key_prefix) == []


def test_close_quiet_drops_event_closed_and_missing_alerts_from_the_index(
    alert_store: AlertStore, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Arrange: one alert closed by an event, one fingerprint with no alert (a lone recovery)
    closed_fp = event(1, B, dims={"host": "closed"})["fingerprint"]
    none_fp = event(3, B, dims={"host": "none"})["fingerprint"]
    busy_fp = event(4, B, dims={"host": "busy"})["fingerprint"]
    alert_store.apply(
        [event(1, B, dims={"host": "closed"}), event(2, B + 5, "CLOSED", dims={"host": "closed"})]
    )
    alert_store.apply([event(3, B, "RECOVERED", dims={"host": "none"})])
    alert_store.apply([event(4, B + 50_000, dims={"host": "busy"})])
    closed_before = alert_store.get(closed_fp)

    # Act
    closed = alert_store.close_quiet(cutoff_ms=B + 10_000)

    # Assert
    assert closed == []
    assert index(redis_client, key_prefix) == [(busy_fp.encode(), float(B + 50_000))]
    assert alert_store.get(closed_fp) == closed_before
    assert alert_store.get(none_fp) is None


def test_a_quiet_close_is_returned_unchanged_by_every_sweep_until_forgotten(
    alert_store: AlertStore, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Arrange
    quiet_fp = event(1, B, dims={"host": "quiet"})["fingerprint"]
    busy_fp = event(2, B, dims={"host": "busy"})["fingerprint"]
    alert_store.apply([event(1, B, dims={"host": "quiet"}), event(2, B + 9, dims={"host": "busy"})])
    alert_store.apply([event(3, B + 50_000, dims={"host": "busy"})])

    # Act
    closed = alert_store.close_quiet(cutoff_ms=B + 10_000)
    again = alert_store.close_quiet(cutoff_ms=B + 10_000)
    later = alert_store.close_quiet(cutoff_ms=B + 20_000)
    listed = index(redis_client, key_prefix)
    alert_store.forget_closed(closed, B + 10_000)
    forgotten = alert_store.close_quiet(cutoff_ms=B + 20_000)

    # Assert
    assert [(a["fingerprint"], a["closed_by"], a["version"]) for a in closed] == [
        (quiet_fp, "quiet", 2)
    ]
    assert again == later == closed
    assert listed == [(quiet_fp.encode(), float(B)), (busy_fp.encode(), float(B + 50_000))]
    assert forgotten == []
    assert index(redis_client, key_prefix) == [(busy_fp.encode(), float(B + 50_000))]
    assert alert_store.get(quiet_fp) == closed[0]


@pytest.mark.parametrize(
    ("forget_at", "kept"),
    [
        pytest.param(B, True, id="score-equal-to-the-cutoff-is-kept"),
        pytest.param(B + 1, False, id="score-below-the-cutoff-is-dropped"),
    ],
)
def test_forget_closed_drops_only_scores_below_its_cutoff(
    alert_store: AlertStore, redis_client: redis.Redis, key_prefix: str, forget_at: int, kept: bool
) -> None:
    # Arrange
    alert_store.apply([event(1, B)])
    closed = alert_store.close_quiet(cutoff_ms=B + 1)

    # Act
    alert_store.forget_closed(closed, forget_at)

    # Assert
    assert [a["closed_by"] for a in closed] == ["quiet"]
    assert index(redis_client, key_prefix) == ([(FP.encode(), float(B))] if kept else [])


def test_forget_closed_keeps_a_fingerprint_that_a_newer_event_reopened(
    alert_store: AlertStore, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Arrange: closed by a sweep, then a newer event opens a new alert before the forget
    alert_store.apply([event(1, B)])
    closed = alert_store.close_quiet(cutoff_ms=B + 10_000)
    reopened = alert_store.apply([event(2, B + 20_000)])

    # Act
    alert_store.forget_closed(closed, B + 10_000)
    swept = alert_store.close_quiet(cutoff_ms=B + 10_000)

    # Assert
    assert [a.outcome for a in reopened] == ["opened"]
    assert index(redis_client, key_prefix) == [(FP.encode(), float(B + 20_000))]
    assert swept == []
    assert alert_store.get(FP) == reopened[0].alert
    assert (alert_store.get(FP) or {})["id"] != closed[0]["id"]


def test_forget_closed_puts_back_an_alert_that_an_event_older_than_the_cutoff_reopened(
    alert_store: AlertStore, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Arrange: closed by a sweep, then an event newer than the close, yet older than the
    # cutoff, opens a new alert; its score stays below the cutoff
    alert_store.apply([event(1, B)])
    closed = alert_store.close_quiet(cutoff_ms=B + 10_000)
    reopened = alert_store.apply([event(2, B + 5_000)])

    # Act: the index drops the fingerprint (its score is below the cutoff) and puts it back
    alert_store.forget_closed(closed, B + 10_000)
    swept = alert_store.close_quiet(cutoff_ms=B + 10_000)

    # Assert: the new alert is still in the index, so the sweep closed it
    assert [a.outcome for a in reopened] == ["opened"]
    assert [(a["id"], a["closed_by"]) for a in swept] == [(reopened[0].alert["id"], "quiet")]
    assert index(redis_client, key_prefix) == [(FP.encode(), float(B + 5_000))]


def test_forget_closed_keeps_a_quiet_close_whose_score_a_later_event_moved(
    alert_store: AlertStore, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Arrange: a recovery after the close changes nothing but moves the index score
    alert_store.apply([event(1, B)])
    closed = alert_store.close_quiet(cutoff_ms=B + 10_000)
    ignored = alert_store.apply([event(2, B + 20_000, "RECOVERED")])

    # Act
    alert_store.forget_closed(closed, B + 10_000)
    listed = index(redis_client, key_prefix)
    not_yet = alert_store.close_quiet(cutoff_ms=B + 20_000)
    again = alert_store.close_quiet(cutoff_ms=B + 20_001)
    alert_store.forget_closed(again, B + 20_001)

    # Assert
    assert [a.outcome for a in ignored] == ["ignored"]
    assert listed == [(FP.encode(), float(B + 20_000))]
    assert not_yet == []
    assert again == closed
    assert index(redis_client, key_prefix) == []


def test_forget_closed_of_nothing_or_of_unlisted_fingerprints_changes_nothing(
    alert_store: AlertStore, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Arrange
    alert_store.apply([event(1, B)])
    listed = index(redis_client, key_prefix)

    # Act
    alert_store.forget_closed([], B + 10)
    alert_store.forget_closed([{"fingerprint": "0" * 40}], B + 10)

    # Assert
    assert index(redis_client, key_prefix) == listed == [(FP.encode(), float(B))]
    assert (alert_store.get(FP) or {})["status"] == "ABNORMAL"


@pytest.mark.parametrize(
    ("late", "status", "outcome"),
    [
        pytest.param(B - 5000, "ABNORMAL", "stale", id="stale-abnormal"),
        pytest.param(B + 5000, "RECOVERED", "ignored", id="ignored-recovery"),
        pytest.param(B + 5000, "CLOSED", "ignored", id="ignored-close"),
    ],
)
def test_a_forgotten_quiet_close_is_not_returned_again_after_a_late_event(
    alert_store: AlertStore, late: int, status: str, outcome: str
) -> None:
    # Arrange: closed, published and forgotten, as a sweep does
    alert_store.apply([event(1, B)])
    closed = alert_store.close_quiet(cutoff_ms=B + 10_000)
    alert_store.mark_published(
        [{"change": "closed", "change_id": f"{a['id']}:{a['version']}", "alert": a} for a in closed]
    )
    alert_store.forget_closed(closed, B + 10_000)
    applied = alert_store.apply([event(2, late, status)])

    # Act
    again = alert_store.close_quiet(cutoff_ms=B + 20_000)

    # Assert
    assert [a.outcome for a in applied] == [outcome]
    assert [(a["closed_by"], a["version"]) for a in closed] == [("quiet", 2)]
    assert again == []


def test_close_quiet_closes_the_oldest_first_up_to_the_limit(alert_store: AlertStore) -> None:
    # Arrange
    events = [event(n, B + n, dims={"host": f"h{n}"}) for n in range(3)]
    alert_store.apply(events)

    # Act: unpublished closes come first again, and take their share of the limit
    first = alert_store.close_quiet(cutoff_ms=B + 100, limit=2)
    unforgotten = alert_store.close_quiet(cutoff_ms=B + 100, limit=2)
    alert_store.forget_closed(first, B + 100)
    rest = alert_store.close_quiet(cutoff_ms=B + 100, limit=2)

    # Assert
    assert [a["fingerprint"] for a in first] == [e["fingerprint"] for e in events[:2]]
    assert unforgotten == first
    assert [a["fingerprint"] for a in rest] == [events[2]["fingerprint"]]
    assert (alert_store.get(events[2]["fingerprint"]) or {})["status"] == "CLOSED"


@pytest.mark.parametrize(
    ("status", "last_time", "last_change"),
    [
        pytest.param("ABNORMAL", B + 40, B, id="abnormal"),
        pytest.param("RECOVERED", B + 40, B + 40, id="recovered"),
    ],
)
def test_a_quiet_close_is_as_of_the_last_event(
    alert_store: AlertStore, status: str, last_time: int, last_change: int
) -> None:
    # Arrange
    alert_store.apply([event(1, B), event(2, B + 40, status)])
    before = alert_store.get(FP) or {}

    # Act
    closed = alert_store.close_quiet(cutoff_ms=B + 1_000_000)

    # Assert
    assert (before["last_time"], before["last_change"]) == (last_time, last_change)
    assert closed == [
        {**before, "status": "CLOSED", "closed_by": "quiet", "last_change": B + 40,
         "version": before["version"] + 1}
    ]  # fmt: skip
    assert alert_store.get(FP) == closed[0]


def test_after_a_quiet_close_a_newer_event_opens_a_new_alert_and_an_older_one_is_stale(
    alert_store: AlertStore,
) -> None:
    # Arrange
    alert_store.apply([event(1, B), event(2, B + 40), event(3, B + 20, "RECOVERED")])
    closed = alert_store.close_quiet(cutoff_ms=B + 100_000)

    # Act
    older = alert_store.apply([event(4, B + 30), event(5, B + 40)])
    not_abnormal = alert_store.apply([event(6, B + 50, "RECOVERED"), event(7, B + 60, "CLOSED")])
    newer = alert_store.apply([event(8, B + 41, severity=3)])

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


def test_the_model_agrees_on_quiet_closes_and_what_follows(alert_store: AlertStore) -> None:
    # Arrange
    model = AlertModel()
    first = [event(1, B), event(2, B + 40), event(3, B + 20, "RECOVERED")]
    later = [event(4, B + 30), event(5, B + 40), event(6, B + 41, severity=3), event(2, B + 40)]

    # Act
    got = [a.outcome for a in alert_store.apply(first)]
    expected = [model.apply(e) for e in first]
    swept = [a["fingerprint"] for a in alert_store.close_quiet(B + 100)]
    swept_by_model = model.close_quiet(B + 100)
    got += [a.outcome for a in alert_store.apply(later)]
    expected += [model.apply(e) for e in later]

    # Assert
    assert got == expected == [
        "opened", "updated", "recovered", "stale", "stale", "opened", "replayed"
    ]  # fmt: skip
    assert swept == swept_by_model == [FP]
    assert state_of(alert_store.get(FP) or {}) == model.states()[FP]
