"""Running the ``workers`` command in tests: a Celery app per call, or a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
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
