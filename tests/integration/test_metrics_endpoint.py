"""The worker's endpoint on a real socket, in this process: it serves the catalogue's worker
metrics over HTTP and closes at stop; a port in use, or an address not of this host, is one
error line and no metrics (the worker runs on)."""

from __future__ import annotations

import logging
import os
import socket
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from workers.config import load_settings
from workers.metrics import process, record
from workers.metrics.catalog import METRICS
from workers.metrics.directory import ENV
from workers.testing import free_port


def settings(port: int, **more: Any) -> Any:
    conf = {
        "workers_kafka_clusters": {"common": {"bootstrap_servers": ["127.0.0.1:9"]}},
        "workers_pipelines": {"alarms": {"cluster": "common", "topic": "t", "tasks": ["a.b"]}},
        "workers_metrics_port": port,
        "workers_metrics_address": "127.0.0.1",
        **more,
    }
    return load_settings(conf, {})


@pytest.fixture
def serving() -> Iterator[list[process.Serving]]:
    started: list[process.Serving] = []
    yield started
    for one in started:
        process.stop(one)


def families(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        return {f.name: f for f in text_string_to_metric_families(reply.read().decode())}


def test_the_endpoint_serves_what_this_process_records_and_closes_at_stop(
    serving: list[process.Serving],
) -> None:
    port = free_port()
    before = os.environ.get(ENV)

    started = process.start(settings(port))
    assert started is not None
    serving.append(started)
    record.alarm_counts({"opened": 2, "published": 2})
    record.handed_off("alarms", 0.004)
    found = families(port)
    serving.remove(started)
    process.stop(started)

    assert found["workers_alerts"].samples[0].labels == {"outcome": "opened"}
    assert found["workers_alerts"].samples[0].value == 2
    assert found["workers_alarm_changes_published"].samples[0].value == 2
    handoff = {s.name: s.value for s in found["workers_handoff_seconds"].samples
               if s.labels.get("le") in (None, "0.005")}  # fmt: skip
    assert handoff == {
        "workers_handoff_seconds_bucket": 1,
        "workers_handoff_seconds_count": 1,
        "workers_handoff_seconds_sum": 0.004,
    }
    assert set(found) <= {m.name for m in METRICS if m.source == "worker"}
    assert not record.enabled()
    assert not os.path.exists(started.directory.path)  # the temporary directory is gone
    assert os.environ.get(ENV) == before
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


@pytest.mark.parametrize(
    ("address", "why"),
    [("in use", "Address already in use"), ("192.0.2.1", "Cannot assign requested address")],
)
def test_a_port_that_cannot_be_bound_is_one_error_line_and_no_metrics(
    address: str, why: str, caplog: pytest.LogCaptureFixture, serving: list[process.Serving]
) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    host = "127.0.0.1" if address == "in use" else address
    try:
        with caplog.at_level(logging.INFO, logger="workers.metrics"):
            started = process.start(settings(port, workers_metrics_address=host))
    finally:
        holder.close()

    assert started is None and not record.enabled()
    assert [r.getMessage() for r in caplog.records] == [
        f"metrics: cannot listen on {host} port {port} (workers_metrics_port): {why}; this "
        "worker runs on without metrics"
    ]
