"""``AlertStore`` on a real Redis agrees with the reference model (``tests/alarm_model.py``)
on thousands of random events: late, re-sent and repeated, with quiet-period sweeps between."""

from __future__ import annotations

import random
from typing import Any

from tests.alarm_model import AlertModel, state_of
from tests.integration.alarm_state_support import B, event
from workers.alarms.state import AlertStore


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


def test_random_events_give_exactly_the_reference_model_states(alert_store: AlertStore) -> None:
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
            for a in alert_store.apply(batch)
        )
        expected.extend(model.apply_change(e) for e in batch)
        if rng.random() < 0.4:
            closed = alert_store.close_quiet(cutoff_ms=now - 30_000)
            alert_store.forget_closed(closed, now - 30_000)  # as the sweep does once published
            # A close returned before comes back unchanged when a late event re-lists its
            # fingerprint; the sweep skips it as already published.
            for a in closed:
                if (a["id"], a["version"]) in returned:
                    assert state_of(a) == returned[a["id"], a["version"]]
                    assert state_of(a) == state_of(alert_store.get(a["fingerprint"]) or {})
            fresh = [a for a in closed if (a["id"], a["version"]) not in returned]
            returned.update({(a["id"], a["version"]): state_of(a) for a in fresh})
            swept.append(sorted(a["fingerprint"] for a in fresh))
            swept_by_model.append(model.close_quiet(now - 30_000))

    # Assert
    states = model.states()
    assert got == expected
    assert swept == swept_by_model
    assert {fp: state_of(alert_store.get(fp) or {}) for fp in states} == states
    assert len(states) == 30
    assert {outcome for outcome, _, _ in got} == {
        "duplicate", "replayed", "stale", "ignored", "opened", "updated", "recovered", "closed"
    }  # fmt: skip
    assert sum(len(fps) for fps in swept) >= 10  # the sweeps did close alerts
    assert sum(outcome == "opened" for outcome, _, _ in got) > len(states)  # alerts reopened
