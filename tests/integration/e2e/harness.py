"""Real Celery worker and beat subprocesses for the end-to-end tests, and record producers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

ROOT = Path(__file__).resolve().parents[3]


class CeleryProcess:
    """One ``celery`` command in its own process group, its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopped = False  # by the test: its exit is expected

    def start(self) -> CeleryProcess:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole group (main process and pool children), as a crash would."""
        if self.proc is None:
            return
        self.stopped = True
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 60) -> float:
        """SIGTERM the main process only (as ``docker stop`` does); returns seconds to exit."""
        assert self.proc is not None
        self.stopped = True
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=timeout)
        return time.monotonic() - started

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Cluster:
    """The processes of one end-to-end test and the environment they share."""

    env: dict[str, str]
    tmp: Path
    queue: str
    processes: list[CeleryProcess] = field(default_factory=list)

    def _celery(self, name: str, *args: str) -> CeleryProcess:
        argv = [sys.executable, "-m", "celery", "-A", "workers.app", *args]
        log = self.tmp / f"{name}.log"
        process = CeleryProcess(name, argv, self.env, log).start()
        self.processes.append(process)
        return process

    def worker(
        self,
        name: str,
        concurrency: int = 2,
        consume: bool = False,
        queues: str = "",
        events: bool = False,
    ) -> CeleryProcess:
        """A prefork worker; ``events`` keeps Celery's gossip, mingle and heartbeat (the
        broadcast channels a production worker has), which tests leave out to start faster."""
        queues = queues or self.queue + (f",{self.queue}.consume" if consume else "")
        quiet = [] if events else ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        return self._celery(
            name, "worker", "-n", f"{name}@%h", "-Q", queues, "-c", str(concurrency),
            "--pool", "prefork", *quiet, "-l", "INFO",
        )  # fmt: skip

    def beat(self) -> CeleryProcess:
        schedule = str(self.tmp / f"beat-{uuid.uuid4().hex[:6]}")
        return self._celery("beat", "beat", "-s", schedule, "--max-interval", "1", "-l", "INFO")

    def check(self) -> None:
        """Raise with the logs if a process exited without the test stopping it."""
        for process in self.processes:
            if not process.stopped and not process.running:
                raise AssertionError(f"{process.name} exited unexpectedly\n{self.logs()}")

    def stop(self) -> None:
        for process in self.processes:
            if process.running:
                process.kill()

    def logs(self, tail: int = 120) -> str:
        parts = []
        for process in self.processes:
            lines = process.log().splitlines()[-tail:]
            parts.append(f"----- {process.name} -----\n" + "\n".join(lines))
        return "\n".join(parts)


def make_env(
    *, kafka: str, redis_url: str, prefix: str, pipelines: dict[str, Any], **extra: str
) -> tuple[dict[str, str], str]:
    queue = f"e2e-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(ROOT),
        WORKERS_CELERY_CONFIG="tests.integration.e2e.celeryconfig_e2e",
        E2E_BROKER_URL=redis_url.rsplit("/", 1)[0] + "/1",
        E2E_QUEUE=queue,
        E2E_KAFKA=kafka,
        E2E_REDIS_URL=redis_url,
        E2E_PREFIX=prefix,
        E2E_PIPELINES=json.dumps(pipelines),
    )
    env.update(extra)  # may replace any of the above (the broker, for one)
    return env, queue


def produce(bootstrap: str, topic: str, values: Iterable[bytes], partitions: int) -> dict[int, int]:
    """Send values round-robin over ``partitions``; returns the last offset per partition."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    try:
        futures = [
            producer.send(topic, value=value, partition=i % partitions)
            for i, value in enumerate(values)
        ]
        producer.flush(timeout=60)
        last: dict[int, int] = {}
        for future in futures:
            meta = future.get(timeout=60)
            last[meta.partition] = max(last.get(meta.partition, -1), meta.offset)
        return last
    finally:
        producer.close(timeout=10)


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, cluster: Cluster | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if cluster is not None:
            cluster.check()
        time.sleep(0.1)
    logs = cluster.logs() if cluster is not None else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{logs}")
