"""``AlertStore`` on a real Redis is idempotent: a batch applied again replays its changes and
leaves identical state, repeated records and event ids are duplicates, and concurrent writers
(threads or processes) lose no update."""

from __future__ import annotations

import multiprocessing
import random
import threading
from collections import Counter
from typing import Any

import pytest
import redis

from tests.integration.alarm_state_support import (
    FP,
    TTL,
    B,
    alert,
    event,
    index,
    outcomes,
    raw_alerts,
)
from workers.alarms.state import AlertStore, alert_id
from workers.connections.redis_clients import redis_client
from workers.state.keys import alarm_key

# -- idempotence ---------------------------------------------------------------------------------


def test_the_same_batch_twice_replays_its_changes_and_leaves_identical_state(
    alert_store: AlertStore, redis_client: redis.Redis, key_prefix: str
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
    first = alert_store.apply(batch)
    state = raw_alerts(redis_client, key_prefix, fps)
    listed = index(redis_client, key_prefix)

    # Act
    second = alert_store.apply(batch)
    third = alert_store.apply(batch)

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


def test_a_redelivered_record_or_a_repeated_event_id_is_a_duplicate(
    alert_store: AlertStore,
) -> None:
    # Arrange
    alert_store.apply([event(1, B), event(2, B + 10)])

    # Act
    redelivered = outcomes(alert_store, [event(2, B + 10)])
    same_event_new_record = outcomes(alert_store, [event(3, B + 20, event_id="e2")])
    that_record_again = outcomes(alert_store, [event(3, B + 20, event_id="e2")])
    stale_then_again = outcomes(
        alert_store, [event(4, B - 10), event(4, B - 10, record=5), event(4, B - 10)]
    )
    ignored_then_again = outcomes(
        alert_store, [event(6, B + 30, "RECOVERED"), event(7, B + 40, "RECOVERED")] * 2
    )

    # Assert
    assert redelivered == ["replayed"]
    assert same_event_new_record == ["duplicate"]
    assert that_record_again == ["duplicate"]
    assert stale_then_again == ["stale", "duplicate", "duplicate"]
    assert ignored_then_again == ["recovered", "ignored", "replayed", "duplicate"]
    assert (alert_store.get(FP) or {})["count"] == 2


def test_a_replayed_record_reports_its_own_change_and_the_alert_as_it_made_it(
    alert_store: AlertStore, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Arrange
    first = alert_store.apply(
        [event(1, B), event(2, B + 10, severity=1), event(3, B + 20, "CLOSED")]
    )
    alert_store.apply([event(4, B + 30, severity=3)])  # a new alert after the close
    state = raw_alerts(redis_client, key_prefix, [FP])

    # Act
    replayed = alert_store.apply(
        [event(2, B + 10, severity=1), event(1, B), event(3, B + 20, "CLOSED")]
    )

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
    assert (alert_store.get(FP) or {})["version"] == 4


def test_a_fresh_apply_reports_its_change_and_no_change_for_the_rest(
    alert_store: AlertStore,
) -> None:
    # Act
    applied = alert_store.apply(
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
    alert_store = AlertStore(redis_client, key_prefix, 120)

    # Act
    alert_store.apply([event(1, B)])

    # Assert
    record = redis_client.ttl(alarm_key(key_prefix, "applied", FP, "r:test/events/0/1"))
    ident = redis_client.ttl(alarm_key(key_prefix, "applied", FP, "e:e1"))
    assert 115 <= record <= 120
    assert 115 <= ident <= 120
    assert redis_client.ttl(alarm_key(key_prefix, "alert", FP)) == -1


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
    client = redis_client(url)  # a server's, or a cluster's (test_redis_cluster_state)
    try:
        alert_store = AlertStore(client, prefix, TTL)
        start.wait(30)
        return Counter(a.outcome for batch in share for a in alert_store.apply(batch))
    finally:
        client.close()


def _process_main(url: str, prefix: str, share: list[Any], start: Any, out: Any) -> None:
    out.put(dict(apply_share(url, prefix, share, start)))


@pytest.mark.parametrize("workers", ["threads", "processes"])
def test_concurrent_writers_lose_no_update(
    alert_store: AlertStore, redis_url: str, key_prefix: str, workers: str
) -> None:
    # Arrange
    opening, shares = abnormal_workload(random.Random(7))
    alert_store.apply(opening)
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
    counts = {
        fp: (alert_store.get(fp) or {}).get("count") for fp in expected_counts(opening, shares)
    }
    assert counts == expected_counts(opening, shares)
    assert sum(counts.values()) == 605
    assert totals == Counter({"updated": 600, "duplicate": 150})
