"""Scenario 3: real Celery worker processes run the reference alarm pipeline (Beat pulls,
parse → build → publish) over a filled topic, until every change is on the output topic."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.cluster import Cluster, CpuMeter, Progress, pool_pids
from bench.kafka_io import delete_topics
from bench.services import Services, names, pipeline
from workers.testing import CeleryCommand, create_topics

# Beat pulls often enough never to starve the workers; backpressure keeps the Celery queue
# (and so Redis) small however large the backlog is.
INTERVAL = 0.25
MAX_QUEUE = 30
LOW, HIGH = 0.1, 0.9  # the measured window: from 10% to 90% of the events applied


def window_rate(samples: list[tuple[float, int]], total: int, low: float = LOW,
                high: float = HIGH) -> float:  # fmt: skip
    """Events per second between ``low`` and ``high`` of ``total`` done: start-up and the tail
    are left out (a worker needs seconds to start; the last batches run on fewer processes)."""
    start = next(s for s in samples if s[1] >= low * total)
    end = next(s for s in samples if s[1] >= high * total)
    if end[0] <= start[0]:
        raise RuntimeError("too few progress samples to measure a rate: use more records")
    return (end[1] - start[1]) / (end[0] - start[0])


def run(
    svc: Services,
    topic: str,
    total: int,
    processes: int,
    tmp: Path,
    execution: str = "chain",
    timeout: float = 900,
) -> dict[str, Any]:
    """Events per second through the whole pipeline with ``processes`` worker processes and
    the stages run as ``execution`` says (``chain`` or ``fused``), and the CPU time each kind
    of process spent per event in the same window."""
    with alarm_pipeline(svc, topic, tmp, execution=execution) as (cluster, progress):
        worker = cluster.worker(concurrency=processes)
        beat = cluster.beat()
        cpu = CpuMeter(lambda: roles(svc, worker, beat))
        samples: list[tuple[float, int]] = []
        deadline = time.monotonic() + timeout
        while True:
            built, changes, published = progress.read()
            samples.append((time.monotonic(), built))
            if len(cpu.marks) < 2 and built >= (HIGH if cpu.marks else LOW) * total:
                cpu.mark()  # at the window's start and end
            if built >= total and published >= changes:
                break
            cluster.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"end to end: {built} of {total} events after {timeout} s")
            time.sleep(0.1)
        rate = window_rate(samples, total)
        return {"processes": processes, "execution": execution,
                "events_per_second": round(rate, 1),
                **cpu.between(int((HIGH - LOW) * total))}  # fmt: skip


@contextmanager
def alarm_pipeline(
    svc: Services, topic: str, tmp: Path, **overrides: Any
) -> Iterator[tuple[Cluster, Progress]]:
    """The reference alarm pipeline over ``topic`` with its own output topic, Redis prefix and
    Celery queue; the processes the caller starts on the cluster are stopped afterwards and
    everything the run made is removed."""
    prefix, queue = names()
    output = f"{prefix}-alerts"
    create_topics(svc.kafka, {output: 6})
    conf = pipeline(topic, interval=INTERVAL, max_queue_length=MAX_QUEUE, **overrides)
    cluster = Cluster(svc.env(prefix, queue, {"bench": conf}, BENCH_OUTPUT=output), tmp, queue)
    client = svc.redis()
    try:
        yield cluster, Progress(client, prefix)
    finally:
        cluster.stop()
        client.close()
        svc.cleanup(prefix, [queue])
        delete_topics(svc.kafka, [output])


def roles(svc: Services, worker: CeleryCommand, beat: CeleryCommand) -> dict[str, list[int]]:
    """The processes whose CPU time is counted, by role (the broker only when local)."""
    pids = pool_pids(worker)
    found: dict[str, list[Any]] = {
        "worker pool": pids[1:],
        "worker main": pids[:1],
        "beat": [beat.pid],
        "redis-server": [svc.pids.get("RedisServer")],
        "broker": [svc.pids.get("TansuBroker")],
        "bench": [os.getpid()],
    }
    return {role: [p for p in ps if p is not None] for role, ps in found.items()}
