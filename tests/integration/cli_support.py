"""Running the ``workers`` command in tests: a Celery app per call, or a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from click.testing import CliRunner, Result
from kafka import KafkaProducer

from workers.cli import main

APP: Celery | None = None  # the app of the current call; --app points here


def base_conf(kafka: str, redis_url: str, prefix: str) -> dict[str, Any]:
    return {
        "broker_url": redis_url.rsplit("/", 1)[0] + "/7",
        "workers_kafka_clusters": {"test": {"bootstrap_servers": [kafka]}},
        "workers_redis_url": redis_url,
        "workers_redis_key_prefix": prefix,
        "workers_alarm_output_topic": f"alerts-{prefix}",
        "workers_pipelines": {},
    }


def pipeline(topic: str, **extra: Any) -> dict[str, Any]:
    return {"cluster": "test", "topic": topic, "tasks": ["workers.alarms.parse"], **extra}


class Cli:
    """``workers --app tests.integration.cli_support:APP ARGS`` in-process, on an app built
    from ``conf`` for each call; a crash is raised, not an exit code."""

    module = __name__

    def __init__(self, monkeypatch: pytest.MonkeyPatch, conf: dict[str, Any]):
        self.monkeypatch, self.conf = monkeypatch, conf

    def __call__(self, *args: str, input: str | None = None) -> Result:
        app = Celery("cli-test", set_as_current=False)
        app.conf.update(self.conf)
        self.monkeypatch.setattr(sys.modules[self.module], "APP", app)
        result = CliRunner().invoke(main, ["--app", f"{self.module}:APP", *args], input=input)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    def subprocess(self, tmp: Path, *args: str, env: dict[str, str] | None = None,
                   **popen: Any) -> subprocess.Popen[str]:  # fmt: skip
        """The command in a child process, its settings in a config module in ``tmp``."""
        name = f"cliconf_{uuid.uuid4().hex[:8]}"
        (tmp / f"{name}.py").write_text("".join(f"{k} = {v!r}\n" for k, v in self.conf.items()))
        argv = [sys.executable, "-m", "workers.cli", "--config", name, *args]
        pipe = subprocess.PIPE
        return subprocess.Popen(argv, cwd=tmp, env={**os.environ, **(env or {})}, text=True,
                                stdout=pipe, stderr=pipe, **popen)  # fmt: skip


def send_each(kafka: str, topic: str, counts: dict[int, int]) -> dict[int, list[Any]]:
    """``counts[p]`` records to partition p, one batch each (see the notes on Tansu)."""
    producer = KafkaProducer(bootstrap_servers=kafka, linger_ms=0)
    sent = {p: [producer.send(topic, value=f"{p}-{i}".encode(), partition=p).get(timeout=30)
                for i in range(n)] for p, n in counts.items()}  # fmt: skip
    producer.close()
    return sent


@dataclass(frozen=True)
class Ran:
    """A finished ``workers`` process: exit code, output, and how long it took."""

    code: int
    out: str
    err: str
    seconds: float


def run_command(tmp: Path, *args: str, timeout: float, env: dict[str, str] | None = None) -> Ran:
    """``python -m workers.cli ARGS`` in ``tmp`` (where config modules are written); fails the
    test if it has not ended after ``timeout`` seconds (a hang, killed)."""
    argv = [sys.executable, "-m", "workers.cli", *args]
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=tmp, env={**os.environ, **(env or {})}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"workers {' '.join(args)} still running after {timeout} s: {out}{err}")
    return Ran(proc.returncode, out, err, time.monotonic() - started)


def write_module(tmp: Path, source: str) -> str:
    """A Python module in ``tmp`` holding ``source``; returns its name."""
    name = f"cliconf_{uuid.uuid4().hex[:8]}"
    (tmp / f"{name}.py").write_text(source)
    return name


@contextmanager
def silent_server() -> Iterator[int]:
    """A TCP server on a free loopback port that accepts every connection and never sends a
    byte (a wrong port, a stuck proxy); yields the port. Connections are closed at the end."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.1)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=serve, name="silent-server", daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        server.close()
        for conn in accepted:
            conn.close()


@pytest.fixture
def exporter_proc() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes started by the test; killed at teardown if still running."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(60)
