"""End to end, in Beat and in long-lived mode: a corpus of hostile records interleaved with good
alarm events over 4 partitions, through parse → build → publish on a real worker. Every good
event takes effect exactly once; every bad record is dead-lettered once, with a reason that
names its problem; the committed offsets reach the log end; the worker stays up."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import pytest
from kafka import KafkaProducer

from tests.integration.e2e.conftest import EVERY_VARIANT, ClusterFactory
from tests.integration.e2e.harness import wait_for
from tests.integration.e2e.hostile import Kind, corpus, event, raw
from tests.integration.e2e.test_alarms import read_changes
from tests.integration.e2e.test_bad_records import read_all
from tests.integration.e2e.test_delivery import pipeline, stored
from workers.alarms.events import parse_event
from workers.alarms.state import AlertStore

pytestmark = [pytest.mark.slow, EVERY_VARIANT]

PARTITIONS = 4
GOOD = 200


def produce(bootstrap: str, topic: str, records: list[Kind]) -> dict[tuple[int, int], Kind]:
    """Each record to partition ``i % 4``, in order; returns where each one landed."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, compression_type="gzip",
        max_request_size=4 << 20,  # the 1.2 MB value travels compressed, as a broker allows
    )  # fmt: skip
    try:
        futures = [
            (
                kind,
                producer.send(
                    topic,
                    value=kind.value,
                    key=kind.key or b"k",
                    headers=kind.headers or [("origin", b"corpus")],
                    partition=i % PARTITIONS,
                ),
            )  # fmt: skip
            for i, kind in enumerate(records)
        ]
        producer.flush(60)
        placed = {}
        for kind, future in futures:
            meta = future.get(60)
            placed[(meta.partition, meta.offset)] = kind
        return placed
    finally:
        producer.close(10)


@pytest.mark.parametrize("mode", ["beat", "long_lived"])
def test_hostile_records_cost_only_themselves(
    mode: str, celery_cluster: ClusterFactory, new_topic, kafka_bootstrap: str, redis_client,
    key_prefix,
) -> None:  # fmt: skip
    topic = new_topic(PARTITIONS)
    new_topic(1, name=f"{topic}.dlq")
    output = new_topic(1, name=f"{topic}-alerts")
    now_s = int(time.time())
    kinds = corpus(now_s)
    plain = [Kind(f"good-{i}", raw(event(f"good-{i}", now_s)), None, alert=f"alert-good-{i}")
             for i in range(GOOD)]  # fmt: skip
    records: list[Kind] = []
    for i, kind in enumerate(kinds):  # hostile ones between good neighbours, on every partition
        records += [*plain[i * 2 : i * 2 + 2], kind]
    records += plain[len(kinds) * 2 :]
    placed = produce(kafka_bootstrap, topic, records)
    last: dict[int, int] = {}
    for p, o in placed:
        last[p] = max(last.get(p, -1), o)
    extra = {"mode": mode, "concurrency": 1, "max_seconds": 1.0} if mode == "long_lived" else {}
    tasks = ["workers.alarms.parse", "workers.alarms.build", "workers.alarms.publish"]
    cluster = celery_cluster(
        {"alarms": pipeline(topic, tasks=tasks, batch_size=25, **extra)},
        WORKERS_ALARM_OUTPUT_TOPIC=output,
        WORKERS_ALARM_QUIET_SECONDS="2592000",
    )
    store = AlertStore(redis_client, key_prefix, 86_400)
    good = [kind for kind in placed.values() if kind.reason is None]
    bad = {at: kind for at, kind in placed.items() if kind.reason is not None}

    worker = cluster.worker("w1", concurrency=2, consume=mode == "long_lived")
    cluster.beat()
    wait_for(
        lambda: stored(redis_client, key_prefix, topic) == {p: o + 1 for p, o in last.items()},
        240, "offsets at the log end", cluster,
    )  # fmt: skip
    wait_for(
        lambda: store.stats().get("opened", 0) == len(good)
        and store.stats().get("published", 0) == len(good),
        120, "every good event applied and published", cluster,
    )  # fmt: skip
    cluster.check()  # the worker (and beat) are still up

    # Every good event took effect exactly once: its own alert, opened once, published once.
    fingerprints = {
        kind.alert: parse_event(json.loads(kind.value or b""), now_s * 1000, 300_000)[
            "fingerprint"
        ]
        for kind in good
    }  # fmt: skip
    alerts = {name: store.get(fp) for name, fp in fingerprints.items()}
    assert {name: (a or {}).get("count") for name, a in alerts.items()} == dict.fromkeys(
        fingerprints, 1
    )
    assert {(a or {}).get("alert_name") for a in alerts.values()} == set(fingerprints)
    changes = read_changes(kafka_bootstrap, output)
    assert Counter(c["alert"]["alert_name"] for c in changes) == Counter(list(fingerprints))
    assert len({c["change_id"] for c in changes}) == len(changes)
    # Every bad record is one dead letter whose reason names its problem.
    letters: dict[tuple[int, int], list[str]] = {}
    for letter in read_all(kafka_bootstrap, f"{topic}.dlq", 1, len(bad)):
        h = {k: v.decode(errors="replace") for k, v in letter.headers}
        at = (int(h["workers.partition"]), int(h["workers.offset"]))
        letters.setdefault(at, []).append(h["workers.reason"])
    wrong: dict[str, Any] = {}
    for at, kind in bad.items():
        found = letters.get(at, [])
        if (
            len(found) != 1
            or (kind.reason or "") not in found[0]
            or not found[0].startswith(kind.prefix)
        ):
            wrong[kind.name] = found
    assert wrong == {}, wrong
    assert set(letters) == set(bad)
    # ... and its error is logged once, not once per cycle or per retry.
    log = worker.log()
    counts = {bad[at].name: log.count(f"{topic}[{at[0]}]@{at[1]} is a dead letter") for at in bad}
    assert {name: n for name, n in counts.items() if n != 1} == {}
    assert len(bad) >= 60 and "Traceback" not in log
