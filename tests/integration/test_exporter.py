"""``workers exporter`` as a real process, scraped over real HTTP, against the real broker and a
redis-server of its own (so that the test can silence and stop it): what it serves equals what
``workers offsets show`` reports; a silent or stopped Redis turns the pipeline down at once,
logged once per change; SIGTERM ends it with exit code 0."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.cli_support import (
    Cli,
    base_conf,
    pipeline,
    run_command,
    send_each,
    write_module,
)
from tests.integration.conftest import TopicFactory
from tests.integration.services import unavailable
from workers.testing import RedisServer, ServiceUnavailable, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Bounds on waits, not expectations: a hang fails the test instead of blocking it.
BOUND = 60.0
SCRAPE_TIMEOUT = "2"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Exporter:
    """A running ``workers exporter``: the URL it logged, its log lines so far, scrapes."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        wait_until(lambda: any("serving the lag of" in line for line in self.lines), BOUND,
                   "the exporter to listen", check=self._alive, explain=self.log)  # fmt: skip
        serving = next(line for line in self.lines if "serving the lag of" in line)
        self.url = serving.split()[-1]

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def _alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"the exporter exited with {self.proc.returncode}: {self.log()}")

    def log(self) -> str:
        return "\n".join(self.lines)

    def scrape(self) -> Samples:
        with urllib.request.urlopen(self.url, timeout=BOUND) as answer:
            text = answer.read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(text) for s in f.samples}  # fmt: skip


def of(samples: Samples, name: str) -> dict[str, float]:
    """Samples of ``name`` by partition (or queue; "" for the pipeline's own)."""
    return {dict(labels).get("partition", dict(labels).get("queue", "")): value
            for (sample, labels), value in samples.items() if sample == name}  # fmt: skip


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server for this test alone: offsets, state and the Celery broker."""
    try:
        server = RedisServer().start()
    except ServiceUnavailable as exc:
        unavailable(str(exc))
        raise AssertionError("unreachable") from exc
    yield server
    server.kill()


@pytest.fixture
def own_cli(monkeypatch: pytest.MonkeyPatch, kafka_bootstrap: str, own_redis: RedisServer,
            key_prefix: str) -> Cli:  # fmt: skip
    return Cli(monkeypatch, base_conf(kafka_bootstrap, own_redis.url, key_prefix))


def queue_tasks(broker_url: str, queue: str, count: int) -> None:
    """``count`` messages waiting in ``queue`` (no worker consumes it)."""
    app = Celery("exporter-test", broker=broker_url, set_as_current=False)
    for _ in range(count):
        app.send_task("workers.alarms.parse", args=([],), queue=queue)
    app.close()


def test_the_exporter_serves_what_offsets_show_reports_goes_down_with_redis_and_ends_on_sigterm(
    own_cli: Cli, own_redis: RedisServer, new_topic: TopicFactory, kafka_bootstrap: str,
    key_prefix: str, tmp_path: Path, exporter_proc: list[subprocess.Popen[str]],
) -> None:  # fmt: skip
    # Arrange: a pipeline mid-way through its topic, and three batches waiting in its queue.
    topic, queue = new_topic(3), f"stage-{key_prefix}"
    own_cli.conf["workers_pipelines"] = {"alarms": pipeline(topic, queue=queue)}
    sent = send_each(kafka_bootstrap, topic, {0: 4, 1: 2})
    own_cli("offsets", "reset", "alarms", "--to", "earliest", "--yes")
    own_cli("offsets", "reset", "alarms", "--to", "1", "--partition", "0", "--yes")
    queue_tasks(own_cli.conf["broker_url"], queue, 3)
    shown = json.loads(own_cli("offsets", "show", "alarms", "--json").stdout)["pipelines"][0]
    argv = ["exporter", "--host", "127.0.0.1", "--port", "0", "--min-interval", "0",
            "--scrape-timeout", SCRAPE_TIMEOUT]  # fmt: skip
    proc = own_cli.subprocess(tmp_path, *argv)
    exporter_proc.append(proc)
    exporter = Exporter(proc)

    # Act: read; silence Redis; let it answer again; stop it; stop the exporter.
    before = time.time()
    up = exporter.scrape()
    after = time.time()
    own_redis.pause()
    silent = exporter.scrape()
    own_redis.resume()
    wait_until(lambda: of(exporter.scrape(), "workers_pipeline_up") == {"": 1.0}, BOUND,
               "the pipeline to be up again", explain=exporter.log)  # fmt: skip
    own_redis.kill()
    stopped = [exporter.scrape(), exporter.scrape()]
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(BOUND)

    # Assert: the numbers are those of `offsets show`, the ages those of the records sent.
    parts = {str(p["partition"]): p for p in shown["partitions"]}
    assert of(up, "workers_pipeline_up") == {"": 1.0}
    assert of(up, "workers_committed_offset") == {k: p["stored"] for k, p in parts.items()}
    assert of(up, "workers_log_end_offset") == {k: p["log_end"] for k, p in parts.items()}
    assert of(up, "workers_lag_records") == {k: p["lag"] for k, p in parts.items()}
    assert of(up, "workers_lag_records") == {"0": 3.0, "1": 2.0, "2": 0.0}
    ages = of(up, "workers_lag_seconds")
    for partition, record in (("0", sent[0][1]), ("1", sent[1][0])):
        low, high = before - record.timestamp / 1000 - 1, after - record.timestamp / 1000 + 1
        assert low <= ages[partition] <= high, (partition, ages[partition], low, high)
    assert ages["2"] == 0.0
    assert of(up, "workers_queue_backlog") == {queue: 3.0}
    assert {dict(labels)["topic"] for (name, labels) in up if "partition" in dict(labels)} == {
        topic}  # fmt: skip
    # Silent or gone, Redis turns the pipeline down, with no other series, and says so once.
    for samples in [silent, *stopped]:
        assert set(samples) == {("workers_pipeline_up", (("pipeline", "alarms"),))}
        assert samples[("workers_pipeline_up", (("pipeline", "alarms"),))] == 0.0
    changes = [line.split(": ", 1)[1] for line in exporter.lines if "its lag" in line
               or "lag read" in line]  # fmt: skip
    assert len(changes) == 4, exporter.log()
    assert changes[0].startswith("pipeline alarms: lag read: 3 partitions of test/")
    assert changes[1] == ("pipeline alarms: cannot read its lag (workers_pipeline_up 0): "
                          f"no answer within {SCRAPE_TIMEOUT} s")  # fmt: skip
    assert changes[2].startswith("pipeline alarms: lag read again: 3 partitions")
    assert changes[3].startswith("pipeline alarms: cannot read its lag (workers_pipeline_up 0): ")
    assert "Connection refused" in changes[3] or "connecting" in changes[3], changes[3]
    # SIGTERM: a clean end.
    assert code == 0, exporter.log()
    wait_until(lambda: "stopping" in exporter.log(), BOUND, "the last log line")
    assert "Traceback" not in exporter.log()


def test_a_port_already_in_use_is_one_line_and_exit_code_1(
    cli: Cli, new_topic: TopicFactory, tmp_path: Path
) -> None:
    cli.conf["workers_pipelines"] = {"alarms": pipeline(new_topic(1))}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = write_module(tmp_path, "".join(f"{k} = {v!r}\n" for k, v in cli.conf.items()))

        ran = run_command(tmp_path, "--config", config, "exporter", "--host", "127.0.0.1",
                          "--port", str(port), timeout=BOUND)  # fmt: skip

    assert (ran.code, ran.out) == (1, "")
    assert ran.err == (
        f"Error: cannot listen on http://127.0.0.1:{port}/metrics: Address already in use\n"
    )
