"""End to end: a real prefork worker (concurrency 2: a long-lived consumer and the alarm stages)
serves ``/metrics`` over HTTP, and what it says is what happened: records pulled, dead letters
by stage and reason class, alerts by outcome, changes on the output topic, leases held; a
killed pool process's leases leave the gauge; a port in use leaves the worker working."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.e2e.conftest import EVERY_EXECUTION, ClusterFactory
from tests.integration.e2e.harness import Cluster, produce, wait_for
from tests.integration.e2e.test_alarms import read_changes
from tests.integration.e2e.test_bad_records import read_all
from tests.integration.e2e.test_delivery import pipeline, seen, stored, uids, values
from tests.integration.e2e.test_long_lived import holders
from workers.testing import free_port

pytestmark = pytest.mark.slow

STAGES = ["workers.alarms.parse", "workers.alarms.build", "workers.alarms.publish"]
PARSE = "workers.alarms.parse"
# Refused by the pull (reason class), and events the parse stage refuses (bad schema).
MALFORMED = [(b"{not json", "not_json"), (b"[1, 2]", "not_object"), (b"\xff\xfe{}", "bad_unicode")]
INVALID_EVENTS = [{"event_id": "x1", "alert_name": "bad", "severity": 9}, {"event_id": "x2"}]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """Every sample the worker's endpoint serves now; empty while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    except (urllib.error.URLError, OSError):
        return {}
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of ``name`` that has ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def event(i: int, status: str, t: int, event_id: str | None = None) -> bytes:
    body = {
        "event_id": event_id or f"e-{status}-{i}-{t}",
        "alert_name": f"metrics check {i}",
        "time": t,
        "severity": 2,
        "status": status,
        "dimensions": {"host": f"web-{i}"},
        "target": "web",
    }
    return json.dumps(body).encode()


def send(bootstrap: str, topic: str, payloads: list[bytes]) -> dict[int, int]:
    """Produce round-robin over the topic's 2 partitions; the last offset per partition."""
    return produce(bootstrap, topic, payloads, partitions=2)


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def alarm_worker(
    celery_cluster: ClusterFactory, new_topic: Any, port: int
) -> Iterator[tuple[Cluster, str, str]]:
    """(cluster, topic, output topic): a long-lived alarm pipeline on one prefork worker of
    concurrency 2 with metrics on ``port``, and beat (its supervisor starts the consumer)."""
    topic = new_topic(2)
    new_topic(1, name=f"{topic}.dlq")
    output = new_topic(3, name=f"{topic}-alerts")
    config = pipeline(
        topic, tasks=STAGES, mode="long_lived", concurrency=1, max_runtime_seconds=50.0,
        redrive_seconds=120.0,
    )  # fmt: skip
    cluster = celery_cluster(
        {"alarms": config},
        WORKERS_ALARM_OUTPUT_TOPIC=output,
        WORKERS_METRICS_PORT=str(port),
        WORKERS_METRICS_ADDRESS="127.0.0.1",
    )
    cluster.worker("metrics", concurrency=2, consume=True)
    cluster.beat()
    yield cluster, topic, output


@EVERY_EXECUTION  # the last stage finishes a batch in both: its commit and its age count
def test_the_endpoint_reports_exactly_what_the_pipeline_did(
    alarm_worker: tuple[Cluster, str, str], port: int, kafka_bootstrap: str, redis_client: Any,
    key_prefix: str,
) -> None:  # fmt: skip
    cluster, topic, output = alarm_worker
    leases = "workers_leases_held"
    wait_for(lambda: value(scrape(port), leases, pipeline="alarms") == 2, 90, "leases", cluster)
    now = int(time.time())
    # Phase 1 opens 6 alerts; phase 2 (after phase 1 is applied, so no batch of it can be
    # applied before one of phase 1) updates 2, recovers 3, closes 1 and repeats one event.
    first = [event(i, "ABNORMAL", now - 100) for i in range(6)]
    first += [bad for bad, _ in MALFORMED] + [json.dumps(e).encode() for e in INVALID_EVENTS]
    send(kafka_bootstrap, topic, first)
    wait_for(
        lambda: value(scrape(port), "workers_alerts_total", outcome="opened") == 6,
        90, "6 alerts opened", cluster,
    )  # fmt: skip
    second = [event(i, "ABNORMAL", now - 50) for i in (0, 1)]
    second += [event(i, "RECOVERED", now - 50) for i in (2, 3, 4)]
    second += [event(5, "CLOSED", now - 50), first[0]]  # the last: an event applied already
    last = send(kafka_bootstrap, topic, second)
    produced = first + second

    wait_for(
        lambda: stored(redis_client, key_prefix, topic) == {p: o + 1 for p, o in last.items()}
        and value(scrape(port), "workers_alarm_changes_published_total") == 12,
        90, "every batch finished and every change published", cluster,
    )  # fmt: skip
    p = {"pipeline": "alarms"}
    # Counts of a cycle are added when it ends, a batch's commit just after the ledger took
    # it, and cycles go on: wait for one scrape in which every count has caught up.
    settled: list[Samples] = []

    def caught_up() -> bool:
        m = scrape(port)
        settled[:] = [m]
        batches = value(m, "workers_batches_total", **p)
        return (
            value(m, "workers_records_pulled_total", **p) == len(produced)
            and batches > 0
            and value(m, "workers_handoff_seconds_count", **p) == batches
            and value(m, "workers_commit_seconds_count", **p) == batches
            and value(m, "workers_record_age_seconds_count", **p) == batches
            and value(m, "workers_pull_cycle_seconds_count", **p)
            == total(m, "workers_pull_cycles_total", **p)
            and value(m, leases, **p) == 2
        )

    wait_for(caught_up, 30, "every count caught up", cluster)
    [m] = settled

    assert value(m, "workers_records_pulled_total", **p) == len(produced)
    assert value(m, "workers_bytes_pulled_total", **p) == sum(len(v) for v in produced)
    assert value(m, "workers_records_delivered_total", **p) == len(produced) - len(MALFORMED)
    for _, reason in MALFORMED:
        letters = {"stage": "pull", "reason": reason, **p}
        assert value(m, "workers_records_dead_lettered_total", **letters) == 1, reason
    letters = {"stage": PARSE, "reason": "invalid_event", **p}
    assert value(m, "workers_records_dead_lettered_total", **letters) == len(INVALID_EVENTS)
    assert total(m, "workers_records_dead_lettered_total") == len(MALFORMED) + 2
    assert {o: value(m, "workers_alerts_total", outcome=o) for o in
            ("opened", "updated", "recovered", "closed")} == {
        "opened": 6, "updated": 2, "recovered": 3, "closed": 1,
    }  # fmt: skip
    assert value(m, "workers_alarm_duplicates_skipped_total") == 1
    assert value(m, "workers_alarm_publish_failures_total") == 0
    changes = read_changes(kafka_bootstrap, output)
    assert value(m, "workers_alarm_changes_published_total") == len(changes) == 12
    dead = read_all(kafka_bootstrap, f"{topic}.dlq", 1, len(MALFORMED) + 2)
    assert len(dead) == len(MALFORMED) + 2
    # Every batch handed off once and finished once (nothing was re-driven), with an age.
    assert value(m, "workers_batches_total", **p) >= 2  # the phases share no batch
    assert value(m, "workers_batches_redriven_total", **p) == 0
    assert value(m, "workers_record_age_seconds_sum", **p) > 0
    assert total(m, "workers_commit_refusals_total") == 0


def test_a_killed_pool_process_leaves_the_leases_gauge(
    alarm_worker: tuple[Cluster, str, str], port: int, redis_client: Any, key_prefix: str,
    kafka_bootstrap: str,
) -> None:  # fmt: skip
    cluster, topic, _ = alarm_worker
    wait_for(lambda: len(holders(redis_client, key_prefix, topic)) == 2, 90, "leases", cluster)
    wait_for(
        lambda: value(scrape(port), "workers_leases_held", pipeline="alarms") == 2,
        30, "the gauge", cluster,
    )  # fmt: skip
    send(kafka_bootstrap, topic, [event(i, "ABNORMAL", int(time.time()) - 10) for i in range(4)])
    wait_for(
        lambda: value(scrape(port), "workers_records_pulled_total", pipeline="alarms") == 4,
        60, "4 records pulled", cluster,
    )  # fmt: skip
    [victim] = {h.pid for h in holders(redis_client, key_prefix, topic).values()}

    os.kill(victim, signal.SIGKILL)  # it never says it ends: its gauge file stays behind
    wait_for(
        lambda: {h.pid for h in holders(redis_client, key_prefix, topic).values()} - {victim}
        and len(holders(redis_client, key_prefix, topic)) == 2,
        90, "a new consumer in a new pool process holds the leases", cluster,
    )  # fmt: skip
    m = scrape(port)

    assert value(m, "workers_leases_held", pipeline="alarms") == 2  # not 4: the dead one left
    assert value(m, "workers_records_pulled_total", pipeline="alarms") == 4  # its counts stay


def test_a_port_in_use_is_one_error_line_and_the_worker_works_on(
    celery_cluster: ClusterFactory, new_topic: Any, kafka_bootstrap: str, redis_client: Any,
    key_prefix: str,
) -> None:  # fmt: skip
    topic = new_topic(2)
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        cluster = celery_cluster(
            {"events": pipeline(topic)},
            WORKERS_METRICS_PORT=str(port),
            WORKERS_METRICS_ADDRESS="127.0.0.1",
        )
        worker = cluster.worker("busy-port", concurrency=2)
        cluster.beat()
        ids = uids(20)
        produce(kafka_bootstrap, topic, values(ids), partitions=2)

        wait_for(lambda: len(seen(redis_client, key_prefix)) == 20, 90, "all records", cluster)
    finally:
        holder.close()

    lines = [line for line in worker.log().splitlines() if "metrics:" in line]
    assert len(lines) == 1, lines
    assert lines[0].endswith(
        f"metrics: cannot listen on 127.0.0.1 port {port} (workers_metrics_port): Address "
        "already in use; this worker runs on without metrics"
    )
    assert "Traceback" not in worker.log()
