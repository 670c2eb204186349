"""Celery worker and beat processes of one test or benchmark scenario: real ``celery``
commands in sessions of their own, sharing one environment, their logs in one folder."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from workers.demo.services import CeleryCommand


@dataclass
class Cluster:
    """The processes of one scenario. ``queue`` is the Celery queue its pipelines use (the
    long-lived consumers use ``<queue>.consume``); ``app`` the Celery app they run."""

    env: dict[str, str]
    logs: Path
    queue: str
    app: str = "workers.app"
    processes: list[CeleryCommand] = field(default_factory=list)

    def worker(
        self,
        name: str | None = None,
        concurrency: int = 2,
        consume: bool = False,
        queues: str = "",
        events: bool = False,
    ) -> CeleryCommand:
        """A prefork worker. ``events`` keeps Celery's gossip, mingle and heartbeat (the
        broadcast channels a production worker has), which scenarios leave out to start faster."""
        name = name or f"w{len(self.processes)}-{uuid.uuid4().hex[:6]}"
        queues = queues or self.queue + (f",{self.queue}.consume" if consume else "")
        quiet = [] if events else ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        args = ["worker", "-n", f"{name}@%h", "-Q", queues, "-c", str(concurrency),
                "--pool", "prefork", *quiet, "-l", "INFO"]  # fmt: skip
        return self._start(name, args)

    def beat(self, name: str = "beat") -> CeleryCommand:
        """A ``celery beat`` with a schedule file of its own; give a second one another
        ``name`` (its log is ``<name>.log``)."""
        schedule = str(self.logs / f"beat-{uuid.uuid4().hex[:6]}")
        return self._start(name, ["beat", "-s", schedule, "--max-interval", "1", "-l", "INFO"])

    def _start(self, name: str, args: list[str]) -> CeleryCommand:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.log"
        process = CeleryCommand(name, args, self.env, app=self.app, log=log).start()
        self.processes.append(process)
        return process

    def check(self) -> None:
        """Raise with the logs if a process exited without being asked to."""
        for process in self.processes:
            if not process.stopped and not process.running:
                raise AssertionError(f"{process.name} exited unexpectedly\n{self.logs_text()}")

    def stop(self) -> None:
        for process in self.processes:
            if process.running:
                process.kill()

    def logs_text(self, tail: int = 120) -> str:
        parts = []
        for process in self.processes:
            lines = process.log().splitlines()[-tail:]
            parts.append(f"----- {process.name} -----\n" + "\n".join(lines))
        return "\n".join(parts)
