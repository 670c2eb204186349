"""Scenario 5: the resident memory of every worker process while two worker processes work
through a backlog, against its resident memory after the first records.

The worker runs the end-to-end configuration (Beat pulls with backpressure, the reference
alarm pipeline). Each process's RSS is read from /proc when the pipeline has applied the
first ``baseline`` events; its peak is the kernel's high-water mark (``VmHWM``) at the end.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.cluster import pool_pids, rss_kib
from bench.e2e import alarm_pipeline
from bench.services import Services

PROCESSES = 2


def run(
    svc: Services,
    topic: str,
    total: int,
    baseline: int,
    tmp: Path,
    execution: str = "fused",
    timeout: float = 3600,
) -> dict[str, Any]:
    at_baseline: dict[int, int] = {}
    peaks: dict[int, int] = {}
    # RSS along the way, to tell growth with the backlog from a one-off step.
    marks = sorted({baseline, *(int(total * f) for f in (0.1, 0.25, 0.5, 0.75, 1.0))})
    curve: dict[int, dict[int, int]] = {}
    with alarm_pipeline(svc, topic, tmp, execution=execution) as (cluster, progress):
        worker = cluster.worker(concurrency=PROCESSES)
        main = worker.pid
        cluster.beat()
        started = time.monotonic()
        first = 0.0
        while True:
            built, changes, published = progress.read()
            pids = pool_pids(worker)
            for pid in pids:
                rss, peak = rss_kib(pid)
                if peak:
                    peaks[pid] = max(peaks.get(pid, 0), peak, rss)
            if built and not first:
                first = time.monotonic()
            if built >= baseline and not at_baseline:
                at_baseline = {pid: rss_kib(pid)[0] for pid in pids}
            for mark in marks:
                if built >= mark and mark not in curve:
                    curve[mark] = {pid: rss_kib(pid)[0] for pid in pids}
            if built >= total and published >= changes:
                break
            cluster.check()
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"memory: {built} of {total} events after {timeout} s")
            time.sleep(0.25)
        seconds = time.monotonic() - first
    rows = [
        {
            "process": "main" if pid == main else "pool",
            "pid": pid,
            "rss_at_baseline_kib": base,
            "peak_rss_kib": peaks.get(pid, base),
            "ratio": round(peaks.get(pid, base) / base, 3),
            "rss_kib_at_marks": [curve[mark].get(pid, 0) for mark in marks],
        }
        for pid, base in sorted(at_baseline.items())
        if base
    ]
    return {
        "records": total,
        "baseline_records": baseline,
        "marks": marks,
        "events_per_second": round(total / seconds) if seconds else None,
        "processes": rows,
        "max_ratio": max(row["ratio"] for row in rows),
    }
