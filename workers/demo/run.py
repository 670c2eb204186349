"""The demo run: services up, a worker and beat, events at a steady rate, live progress, a
reconciled summary, and everything it started stopped again (also on Ctrl-C or SIGTERM)."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter, deque
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from celery import Celery
from kafka import KafkaProducer
from kafka.errors import KafkaError

from workers.cli.base import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_UNAVAILABLE
from workers.demo import CONSUME_QUEUE, QUEUE, TOPIC, events
from workers.demo.progress import Screen, Snapshot, line, snapshot
from workers.demo.services import CeleryCommand, RedisServer, ServiceUnavailable, TansuBroker
from workers.demo.summary import summarize
from workers.ops.context import Ops
from workers.ops.topics import create_topics

SETTLE_TIMEOUT = 120.0


class Demo:
    def __init__(self, duration: float, rate: float, seed: int | None, out: TextIO) -> None:
        self.duration = duration
        self.rate = rate
        self.stream = events.EventStream(seed)
        self.out = out
        self.screen = Screen(out, out.isatty())
        self.logs = Path(tempfile.mkdtemp(prefix="workers-demo-"))
        self.services: list[Any] = []
        self.made: Counter[str] = Counter()
        self.failed = 0
        self.first_failure = ""
        self.ops: Ops | None = None

    # -- services ---------------------------------------------------------------------------

    def start(self) -> Ops:
        say = self.screen.say
        redis_server = self._up(RedisServer())
        broker = self._up(TansuBroker())
        say(f"redis-server    127.0.0.1:{redis_server.port}  pid {redis_server.pid}")
        say(f"Kafka broker    {broker.bootstrap}  pid {broker.pid} (Tansu, in memory)")
        env = {"WORKERS_CELERY_CONFIG": "workers.demo.config",
               "WORKERS_DEMO_REDIS": f"redis://127.0.0.1:{redis_server.port}",
               "WORKERS_DEMO_KAFKA": broker.bootstrap}  # fmt: skip
        os.environ.update(env)
        self.env = env
        app = Celery("workers-demo")
        app.config_from_object("workers.demo.config")
        self.ops = Ops.for_app(app)
        for created in create_topics(self.ops, partitions=3, replication_factor=1):
            say(f"topic           {created.topic}  {created.status}")
        # The long-lived consumer holds a pool process: it gets a worker of its own, so the
        # batches it hands off never wait for a process it occupies.
        consumer = self._up(self._worker("consumer", CONSUME_QUEUE, 1))
        worker = self._up(self._worker("worker", QUEUE, 2))
        beat = self.start_beat()
        say(f"celery worker   pid {consumer.pid} (1 process: the long-lived consumer)")
        say(f"celery worker   pid {worker.pid} (2 processes: the alarm stages and the sweep)")
        say(f"celery beat     pid {beat.pid}; logs in {self.logs}")
        self._wait_ready(consumer, "consumer")
        self._wait_ready(worker, "worker")
        return self.ops

    def _worker(self, name: str, queue: str, processes: int) -> CeleryCommand:
        return CeleryCommand(f"celery worker ({name})", [
            "worker", "-n", f"demo-{name}@%h", "-Q", queue, "-c", str(processes),
            "--pool", "prefork", "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-l", "INFO", "-f", str(self.logs / f"{name}.log"),
        ], self.env)  # fmt: skip

    def start_beat(self) -> CeleryCommand:
        beat: CeleryCommand = self._up(CeleryCommand("celery beat", [
            "beat", "-s", str(self.logs / "beat-schedule"), "--max-interval", "1", "-l", "INFO",
            "-f", str(self.logs / "beat.log"),
        ], self.env))  # fmt: skip
        return beat

    def _up(self, service: Any) -> Any:
        self.services.append(service)
        return service.start()

    def _wait_ready(self, worker: CeleryCommand, name: str) -> None:
        log = self.logs / f"{name}.log"
        deadline = time.monotonic() + 60
        while not (log.exists() and "ready." in log.read_text(errors="replace")):
            if not worker.running or time.monotonic() > deadline:
                raise ServiceUnavailable(f"the celery worker did not start; see {log}:\n"
                                         + _tail(log) + worker.output()[-2000:])  # fmt: skip
            time.sleep(0.2)

    def stop(self) -> None:
        if self.ops is not None:
            self.ops.close()
        for service in reversed(self.services):  # beat, workers, then the broker and Redis
            service.stop(timeout=20)

    # -- the run ----------------------------------------------------------------------------

    def produce(self, ops: Ops) -> None:
        producer = KafkaProducer(bootstrap_servers=self.env["WORKERS_DEMO_KAFKA"], acks="all",
                                 linger_ms=5)  # fmt: skip
        pending: deque[tuple[Any, str]] = deque()  # sends not yet confirmed, oldest first
        sent = 0
        started = time.monotonic()
        snap_at = 0.0
        try:
            while (elapsed := time.monotonic() - started) < self.duration:
                due = min(int(elapsed * self.rate) - sent, int(self.rate))
                for _ in range(due):
                    value, key, kind = self.stream.next()
                    pending.append((producer.send(TOPIC, value=value, key=key), kind))
                sent += max(0, due)
                if elapsed - snap_at >= 1.0:
                    snap_at = elapsed
                    self._confirm(pending, done_only=True)  # memory bounded by a second's sends
                    self.screen.status(line(elapsed, self.duration, sent, snapshot(ops)),
                                       elapsed)  # fmt: skip
                time.sleep(0.02)
            producer.flush(timeout=60)
            self._confirm(pending)
        finally:
            producer.close(timeout=10)
        if self.failed:
            self.screen.say(f"{self.failed} send(s) failed and are not counted as produced "
                            f"(first: {self.first_failure})")  # fmt: skip

    def _confirm(self, pending: deque[tuple[Any, str]], done_only: bool = False) -> None:
        """Count confirmed sends by kind, in order; ``done_only`` stops at the first unsettled."""
        while pending and (not done_only or pending[0][0].is_done):
            future, kind = pending.popleft()
            try:
                future.get(timeout=30)
            except KafkaError as exc:
                self.failed += 1
                self.first_failure = self.first_failure or str(exc)
            else:
                self.made[kind] += 1

    def settle(self, ops: Ops) -> Snapshot:
        """Wait until every record went through parse and build and the output is quiet."""
        produced = sum(self.made.values())
        started = time.monotonic()
        beat = self.services[-1]
        stable_since, last_published = time.monotonic(), -1
        while True:
            now = time.monotonic()
            snap = snapshot(ops)
            text = line(self.duration, self.duration, produced, snap)
            self.screen.status(f"draining ({now - started:.0f}s): {text}", now)
            if snap.settled(produced) and beat.running:
                beat.stop(timeout=10)  # no more sweeps: the snapshot below is final
            published = snap.alarms.get("published", 0)
            if published != last_published:
                stable_since, last_published = now, published
            if snap.settled(produced) and not beat.running and now - stable_since >= 3:
                self.screen.say(f"drained ({now - started:.0f}s):  "
                                + line(self.duration, self.duration, produced, snap))  # fmt: skip
                return snap
            if now - started > SETTLE_TIMEOUT:
                self.screen.say(f"not settled after {SETTLE_TIMEOUT:.0f} s; see {self.logs}")
                return snap
            time.sleep(0.5)


def run_demo(duration: float, rate: float, keep: bool, seed: int | None,
             out: TextIO | None = None) -> int:  # fmt: skip
    """Run the demo; returns the ``workers`` command's exit code: ``EXIT_OK`` the summary
    reconciles, ``EXIT_FAILED`` it does not, ``EXIT_UNAVAILABLE`` a service is missing or did
    not start, ``EXIT_INTERRUPTED`` interrupted."""
    out = out or sys.stdout
    demo = Demo(duration, rate, seed, out)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    code = EXIT_FAILED
    finished = False  # only a demo that ran to its summary leaves services up for --keep
    try:
        ops = demo.start()
        demo.screen.say(f"producing about {rate:g} alarm events/s for {duration:g} s "
                        "(Ctrl-C stops everything)")  # fmt: skip
        demo.produce(ops)
        snap = demo.settle(ops)
        summary = summarize(ops, demo.made, snap)
        for text in summary.lines():
            demo.screen.say(text)
        code = EXIT_OK if summary.ok else EXIT_FAILED
        finished = True
    except KeyboardInterrupt:
        demo.screen.say("interrupted: stopping everything the demo started")
        code = EXIT_INTERRUPTED
    except ServiceUnavailable as exc:
        demo.screen.say(f"cannot run the demo: {exc}")
        code = EXIT_UNAVAILABLE
    finally:
        signal.signal(signal.SIGTERM, previous)
        if keep and finished:
            if not demo.services[-1].running:  # beat was stopped for the final count
                beat = demo.start_beat()
                demo.screen.say(f"celery beat     pid {beat.pid} (started again for --keep)")
            _print_keep(demo)
        else:
            demo.stop()
            if code == 0:
                shutil.rmtree(demo.logs, ignore_errors=True)
            else:
                demo.screen.say(f"logs kept in {demo.logs}")
    return code


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _print_keep(demo: Demo) -> None:
    pids = " ".join(str(s.pid) for s in demo.services if s.running)
    env = " ".join(f"{k}={v}" for k, v in demo.env.items())
    for text in (
        "services left running (--keep); stop them with:", f"  kill {pids}",
        "point the workers command at them:", f"  export {env}",
        "  workers offsets show alarms", "  workers lag --watch", "  workers dlq show alarms",
    ):  # fmt: skip
        demo.screen.say(text)


def _tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
