"""The Celery processes of a chaos run: worker processes (prefork) and beat, started through the
end-to-end harness. Kills whole workers or pool children on request and replaces whatever
exited without being asked to (an *unplanned exit*, reported with the tail of its log)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from workers.testing import CeleryCommand as CeleryProcess
from workers.testing.cluster import Cluster

MAX_EXITS = 40  # more and the processes are crash-looping, not being knocked over by faults


@dataclass(frozen=True, slots=True)
class Exit:
    """A process that exited on its own."""

    at: float
    name: str
    returncode: int | None
    log_tail: str


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (the prefork pool of a worker's main process)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


class Fleet:
    """``size`` workers (``-c concurrency``, also serving the consumers' queue when
    ``consume``) and one beat. Thread-safe: faults and the watchdog share it."""

    def __init__(self, cluster: Cluster, size: int, concurrency: int, consume: bool,
                 clock: float) -> None:  # fmt: skip
        self.cluster = cluster
        self.size, self.concurrency, self.consume = size, concurrency, consume
        self.t0 = clock
        self.workers: list[CeleryProcess] = []
        self.beat: CeleryProcess | None = None
        self.exits: list[Exit] = []
        self.started = 0
        self._lock = threading.RLock()

    def start(self) -> Fleet:
        with self._lock:
            for _ in range(self.size):
                self._new_worker()
            self.beat = self.cluster.beat()
        return self

    def _new_worker(self) -> CeleryProcess:
        self.started += 1
        worker = self.cluster.worker(f"w{self.started}", self.concurrency, consume=self.consume)
        self.workers.append(worker)
        return worker

    def kill_worker(self, rng: random.Random) -> str:
        """SIGKILL a whole worker (its process group) and start a new one in its place."""
        with self._lock:
            live = [w for w in self.workers if w.running]
            if not live:
                return "no live worker"
            victim = rng.choice(live)
            victim.kill()
            self.workers.remove(victim)
            fresh = self._new_worker()
            return f"{victim.name} killed, {fresh.name} started"

    def kill_children(self, rng: random.Random, count: int) -> list[str]:
        """SIGKILL ``count`` pool processes, picked among all live workers' pools; returns
        them as ``worker/pid``."""
        with self._lock:
            pool = [(w.name, pid) for w in self.workers if w.running and w.proc is not None
                    for pid in children(w.proc.pid)]  # fmt: skip
            victims = rng.sample(pool, min(count, len(pool)))
            for _, pid in victims:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return [f"{name}/{pid}" for name, pid in victims]

    def watch(self) -> list[Exit]:
        """Replace every process that exited unasked; returns those exits. Raises
        ``RuntimeError`` once more than ``MAX_EXITS`` did: they cannot start at all."""
        found = []
        with self._lock:
            for worker in list(self.workers):
                if not worker.stopped and not worker.running:
                    found.append(self._exit(worker))
                    self.workers.remove(worker)
                    self._new_worker()
            if self.beat is not None and not self.beat.stopped and not self.beat.running:
                found.append(self._exit(self.beat))
                self.beat = self.cluster.beat()
            self.exits.extend(found)
        if len(self.exits) > MAX_EXITS:
            last = self.exits[-1]
            raise RuntimeError(
                f"{len(self.exits)} unplanned exits; last: {last.name}\n{last.log_tail}"
            )
        return found

    def _exit(self, process: CeleryProcess) -> Exit:
        code = process.proc.returncode if process.proc is not None else None
        tail = "\n".join(process.log().splitlines()[-15:])
        return Exit(round(time.monotonic() - self.t0, 1), process.name, code, tail)

    def stop(self) -> None:
        with self._lock:
            self.cluster.stop()

    def logs(self) -> list[Path]:
        return [p.log_path for p in self.cluster.processes]
