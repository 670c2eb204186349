"""``python -m bench.profile``: where the CPU of one event goes, stage by stage.

Runs the reference alarm pipeline end to end as ``bench.e2e`` does (a real ``celery worker``
and ``celery beat`` over a filled topic), and once 10% of the events are applied samples the
worker (main and pool processes) and beat with ``py-spy record --subprocesses --nonblocking -f
raw`` for ``--seconds``. Every sampled stack is put in one category (``classify``: pull poll,
decode, hand-off, the stages' bodies, Celery around them, the worker's main process, ...); a
category's samples / rate / events applied in the window is its *sampled* µs per event.

py-spy samples a thread whenever the kernel shows it runnable: on a CPU *or waiting for one*.
On a busy machine samples therefore overstate CPU time, so the table also gives each category
its *CPU* µs per event: the sampled figures scaled, role by role (pool processes, the worker's
main process, beat), to the CPU time ``/proc`` counted for those processes over the same window
(as ``bench.cluster.CpuMeter`` reads it). The output shows how far the two differ, and why:
the threads' time on a CPU and waiting in the run queue over the window (``schedstat``), and
an unprofiled ``bench.e2e`` run of the same configuration (``--no-baseline`` skips it). Redis
and the broker are not Python: their CPU per event comes from ``/proc`` (when they are local).

py-spy's default pauses the process for each sample; that wakes threads blocked in a system
call and the next sample counts them busy, hence ``--nonblocking`` (``--blocking`` to compare).

``--side-by-side A.json B.json`` prints the tables of earlier runs as one. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PY_SPY = Path(sys.executable).with_name("py-spy")
LOW = 0.1  # sampling starts once this share of the events is applied (start-up left out)

# Categories, in the order tables show them.
POLL = "pull: poll (kafka-python: fetched records to messages)"
KAFKA_IO = "pull: consumer I/O thread (kafka-python kafka-io: fetch requests)"
DECODE = "pull: decode (codecs.decode_or_reason)"
HAND_OFF = "pull: hand-off to the Celery broker"
PULL_REST = "pull: ledger, leases, offsets, brake, backlog"
PARSE = "stage parse"
BUILD_STORE = "stage build: alert store (Redis)"
BUILD_REST = "stage build: the rest"
PUBLISH_STORE = "stage publish: alert store (Redis)"
PUBLISH_SEND = "stage publish: produce (KafkaProducer.send) and wait"
SENDER = "producer I/O thread (kafka-python Sender)"
STAGE_FRAME = "pool: stage ledger, brake, isolation (workers/stages)"
NEXT_TASK = "pool: Celery sends the chain's next task"
CELERY = "pool: Celery (receive, decode, trace, ack)"
POOL_OTHER = "pool: other"
MAIN_POOL = "worker main: hand-over to the pool (billiard, asynpool)"
MAIN = "worker main: broker, message decode, event loop"
BEAT = "beat process"
OTHER = "other"
IDLE = "idle (left out)"  # waits py-spy's idle check misses (see IDLE_LEAVES)
CATEGORIES = (POLL, KAFKA_IO, DECODE, HAND_OFF, PULL_REST, PARSE, BUILD_STORE, BUILD_REST,
              PUBLISH_STORE, PUBLISH_SEND, SENDER, STAGE_FRAME, NEXT_TASK, CELERY, POOL_OTHER,
              MAIN_POOL, MAIN, BEAT, OTHER)  # fmt: skip
SERVICES = ("redis-server", "broker")  # CPU from /proc, not sampled

# A pattern names a function and a file: ``func@path`` ("" for any function); a frame matches
# when its function is ``func`` (or ``Class.func``) and its file name contains ``path``.
PULL_TASK = "pull@workers/pulling/tasks.py"
STAGE_BODY = {name: f"{name}@workers/alarms/tasks.py" for name in ("parse", "build", "publish")}
ALERT_STORE = "@workers/alarms/state.py"
# Waits: py-spy means to leave these out as idle, but its check compares the bare name
# (``select``), and with Python 3.11+ it reads qualified ones (``EpollSelector.select``).
IDLE_LEAVES = ("select@selectors.py", "wait@threading.py")
MAIN_POOL_FRAMES = ("@billiard/", "@celery/concurrency/")


@dataclass(frozen=True)
class Rule:
    """Stacks with a frame matching every pattern of ``needs`` belong to ``category``."""

    category: str
    needs: tuple[str, ...]


# Pool processes' stacks: the first rule that matches wins (the most specific come first).
POOL_RULES = (
    Rule(SENDER, ("run@kafka/producer/sender.py",)),
    Rule(KAFKA_IO, ("run_forever@kafka/net/selector.py",)),
    Rule(POLL, (PULL_TASK, "poll@kafka/consumer/group.py")),
    Rule(DECODE, (PULL_TASK, "decode_or_reason@workers/kafka/codecs.py")),
    Rule(HAND_OFF, (PULL_TASK, "hand_off@workers/pulling/handoff.py")),
    Rule(PULL_REST, (PULL_TASK,)),
    Rule(PARSE, (STAGE_BODY["parse"],)),
    Rule(BUILD_STORE, (STAGE_BODY["build"], ALERT_STORE)),
    Rule(BUILD_REST, (STAGE_BODY["build"],)),
    Rule(PUBLISH_STORE, (STAGE_BODY["publish"], ALERT_STORE)),
    Rule(PUBLISH_SEND, (STAGE_BODY["publish"],)),
    Rule(STAGE_FRAME, ("@workers/stages/",)),
    Rule(NEXT_TASK, ("apply_async@celery/",)),
    Rule(CELERY, ("@celery/",)),
    Rule(CELERY, ("@kombu/",)),
    Rule(CELERY, ("@billiard/",)),
)

_FRAME = re.compile(r"^(?P<func>.*) \((?P<path>[^()]*?)(?::\d+)?\)$")
_PROCESS = re.compile(r"^process (?P<pid>\d+):")


def frame_parts(frame: str) -> tuple[str, str]:
    """(function, file) of a py-spy frame ``func (path/file.py:line)``; ("", "") otherwise."""
    found = _FRAME.match(frame)
    return (found["func"], found["path"]) if found else ("", "")


def matches(frame: str, pattern: str) -> bool:
    func, _, path = pattern.partition("@")
    name, where = frame_parts(frame)
    if func and name != func and not name.endswith("." + func):  # py-spy adds the class
        return False
    return bool(where) and path in where


def split(stack: Sequence[str]) -> tuple[int | None, Sequence[str]]:
    """(pid, frames) of a ``--subprocesses`` stack: it starts with ``process PID:"cmdline"``,
    a child's with its parents' first; the frames follow, outermost first."""
    pid, first = None, 0
    for i, element in enumerate(stack):
        found = _PROCESS.match(element)
        if found is None:
            break
        pid, first = int(found["pid"]), i + 1
    return pid, stack[first:]


def classify(stack: Sequence[str], roles: Mapping[int, str]) -> str:
    """The category of one sampled stack (as py-spy writes it: processes, then frames from
    the outermost). ``roles`` maps the pids of the worker's main process and of beat to
    ``MAIN`` and ``BEAT``; any other process is a pool process."""
    pid, frames = split(stack)
    if frames and any(matches(frames[-1], p) for p in IDLE_LEAVES):
        return IDLE
    if pid is None:
        return OTHER
    role = roles.get(pid)
    if role == MAIN and any(matches(f, p) for f in frames for p in MAIN_POOL_FRAMES):
        return MAIN_POOL
    if role is not None:
        return role
    for rule in POOL_RULES:
        if all(any(matches(f, p) for f in frames) for p in rule.needs):
            return rule.category
    return POOL_OTHER


def parse_raw(text: str) -> Counter[tuple[str, ...]]:
    """Sample counts by stack from py-spy's raw output (``frame;frame;... count`` lines)."""
    found: Counter[tuple[str, ...]] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            found[tuple(stack.split(";"))] += int(count)
    return found


def tally(texts: Iterable[str], roles: Mapping[int, str]) -> dict[str, int]:
    """Samples by category over py-spy raw outputs, in ``CATEGORIES`` order."""
    counts: Counter[str] = Counter()
    for text in texts:
        for stack, n in parse_raw(text).items():
            counts[classify(stack, roles)] += n
    return {c: counts[c] for c in (*CATEGORIES, IDLE) if counts[c]}


def per_event(samples: Mapping[str, int], rate: float, events: float) -> dict[str, float]:
    """µs per event by category, as sampled: samples / rate / events x 1e6 (idle left out)."""
    return {c: round(n / rate / events * 1e6, 1) for c, n in samples.items() if c != IDLE}


def role_of(category: str) -> str:
    """The process role (as ``bench.e2e.roles`` names it) whose samples make a category."""
    return {MAIN: "worker main", MAIN_POOL: "worker main", BEAT: "beat"}.get(
        category, "worker pool"
    )


def scaled(sampled: Mapping[str, float], cpu: Mapping[str, float]) -> dict[str, float]:
    """Sampled µs/event scaled, role by role, to the CPU time the kernel counted for the
    role's processes (``cpu``: µs/event by role): each category keeps its share of its role's
    samples. Samples count time a thread was running *or runnable* (waiting for a core), so on
    a busy machine they overstate CPU time; the split inside a process is what they measure."""
    totals: dict[str, float] = {}
    for c, v in sampled.items():
        totals[role_of(c)] = totals.get(role_of(c), 0.0) + v
    return {c: round(v * cpu.get(role_of(c), 0.0) / totals[role_of(c)], 1) if v else 0.0
            for c, v in sampled.items()}  # fmt: skip


def _rows(result: Mapping[str, Any]) -> dict[str, tuple[float | None, float]]:
    """category -> (sampled µs/event or None, CPU µs/event), services last."""
    sampled, cpu = result["us_per_event"], result["cpu_us_per_event"]
    rows: dict[str, tuple[float | None, float]] = {c: (sampled[c], cpu[c]) for c in cpu}
    for name, v in result["services_us_per_event"].items():
        rows[f"{name} (/proc)"] = (None, float(v))
    return rows


def markdown(result: Mapping[str, Any]) -> str:
    """The table of one run: category | sampled µs/event | CPU µs/event | share of CPU."""
    return side_by_side([result], heads=[""])


def side_by_side(results: Sequence[Mapping[str, Any]], heads: Sequence[str] = ()) -> str:
    """One table of several runs: sampled µs/event, CPU µs/event (scaled to /proc) and share
    of the CPU, a column group per run."""
    heads = heads or [f"{r['execution']}: " for r in results]
    rows = [_rows(r) for r in results]
    services = [f"{s} (/proc)" for s in SERVICES]
    order = [c for c in (*CATEGORIES, *services) if any(c in row for row in rows)]
    totals = [sum(cpu for _, cpu in row.values()) or 1.0 for row in rows]
    cells = " | ".join(f"{h}sampled | {h}CPU µs/event | {h}share" for h in heads)
    lines = [f"| category | {cells} |", "| --- |" + " ---: | ---: | ---: |" * len(rows)]
    for c in order:
        parts = []
        for row, total in zip(rows, totals, strict=True):
            sampled, cpu = row.get(c, (0.0, 0.0))
            shown = "" if sampled is None else f"{sampled:,.1f}"
            parts.append(f"{shown} | {cpu:,.1f} | {cpu / total:.0%}")
        lines.append(f"| {c} | " + " | ".join(parts) + " |")
    sums = []
    for r, total in zip(results, totals, strict=True):
        sampled_total = sum(r["us_per_event"].values())
        sums.append(f"**{sampled_total:,.1f}** | **{total:,.1f}** |")
    lines.append("| **total** | " + " | ".join(sums) + " |")
    return "\n".join(lines)


# -- the run ----------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--records", type=int, default=80_000, help="events in the topic (80000)")
    p.add_argument("--processes", type=int, default=1, help="worker pool processes (1)")
    p.add_argument("--execution", choices=("chain", "fused"), default="fused")
    p.add_argument("--seconds", type=float, default=15.0, help="sampling duration (15)")
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second (200)")
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--blocking", action="store_true",
                   help="let py-spy pause the processes for each sample (its default): it then "
                   "counts many waiting threads as busy")  # fmt: skip
    p.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="skip the unprofiled end-to-end run (bench.e2e) of this setup")  # fmt: skip
    p.add_argument("--keep-raw", type=Path, help="directory to keep py-spy's raw output in")
    p.add_argument("--json", type=Path, help="where the results go")
    p.add_argument("--side-by-side", nargs="+", type=Path, metavar="JSON",
                   help="print the tables of earlier runs' JSON files as one and exit")  # fmt: skip
    return p.parse_args(argv)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def sched_ns(pids: Iterable[int]) -> tuple[int, int]:
    """(ns on a CPU, ns runnable but waiting for one) of every thread of ``pids`` so far, from
    ``/proc/PID/task/TID/schedstat``; threads gone take theirs with them."""
    run = wait = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                fields = (task / "schedstat").read_text().split()
            except OSError:
                continue
            run, wait = run + int(fields[0]), wait + int(fields[1])
    return run, wait


def tree() -> dict[str, Any]:
    """The commit measured and the files of the package that differ from it (this tree is
    shared: others edit it while runs go)."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return done.stdout.rstrip() if done.returncode == 0 else ""

    changed = [line[3:] for line in git("status", "--porcelain", "--", "workers").splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD"), "changed_in_workers": changed}


def spy(pid: int, out: Path, rate: int, seconds: float, blocking: bool) -> subprocess.Popen[bytes]:
    args = [str(PY_SPY), "record", "--subprocesses", "-f", "raw", "-r", str(rate),
            "-d", str(max(1, round(seconds))), "-o", str(out), "-p", str(pid)]  # fmt: skip
    if not blocking:  # py-spy's default pauses the process, and then misjudges waits as busy
        args.append("--nonblocking")
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def profile(svc: Any, topic: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """One profiled end-to-end run: py-spy samples and /proc CPU over the same window."""
    from bench.cluster import CpuMeter, pool_pids
    from bench.e2e import alarm_pipeline, roles

    total = args.records
    raw_dir = args.keep_raw or tmp
    raw_dir.mkdir(parents=True, exist_ok=True)
    tag = f"{args.execution}-{args.processes}"
    outs = {"worker": raw_dir / f"{tag}-worker.txt", "beat": raw_dir / f"{tag}-beat.txt"}
    with alarm_pipeline(svc, topic, tmp, execution=args.execution) as (cluster, progress):
        worker = cluster.worker(concurrency=args.processes)
        beat = cluster.beat()
        deadline = time.monotonic() + 600
        while progress.read()[0] < LOW * total:
            cluster.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"profile: {progress.read()[0]} of {total} events in 600 s")
            time.sleep(0.05)
        if worker.pid is None or beat.pid is None:
            raise RuntimeError("the worker or beat has no pid")
        pids = {"worker": worker.pid, "beat": beat.pid}
        cpu = CpuMeter(lambda: roles(svc, worker, beat))
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        sched0 = sched_ns(pool_pids(worker))
        cpu.mark()
        before, t0 = progress.read()[0], time.monotonic()
        spies = {name: spy(pid, outs[name], args.rate, args.seconds, args.blocking)
                 for name, pid in pids.items()}  # fmt: skip
        said = {name: s.communicate(timeout=args.seconds + 120)[0].decode(errors="replace")
                for name, s in spies.items()}  # fmt: skip
        after, t1 = progress.read()[0], time.monotonic()
        cpu.mark()
        sched1 = sched_ns(pool_pids(worker))
        spent = resource.getrusage(resource.RUSAGE_CHILDREN)
        for name, s in spies.items():
            if s.returncode != 0:
                raise RuntimeError(f"py-spy ({name}) failed: {said[name][-2000:]}")
        texts = [outs[name].read_text() for name in spies]
    events = after - before
    if events <= 0:
        raise RuntimeError("no event was applied while py-spy sampled")
    elapsed = t1 - t0
    # py-spy samples for --seconds of the window (attaching and exiting take the rest): the
    # events of those seconds, at the window's rate.
    sampled_seconds = max(1, round(args.seconds))
    sampled_events = events * min(1.0, sampled_seconds / elapsed)
    samples = tally(texts, {worker.pid: MAIN, beat.pid: BEAT})
    us = per_event(samples, args.rate, sampled_events)
    meter = cpu.between(events)
    proc = meter["cpu_us_per_event"]
    spied = sum(v for c, v in us.items() if role_of(c) != "beat")
    kernel = proc["worker pool"] + proc["worker main"]
    run_us, wait_us = ((b - a) / 1e3 / events for a, b in zip(sched0, sched1, strict=True))
    py_spy_cpu = (spent.ru_utime + spent.ru_stime) - (children.ru_utime + children.ru_stime)
    # Cores the run's own processes kept busy, py-spy included; the rest of the machine's busy
    # cores are someone else's (this box is shared).
    ours = sum(proc.values()) * events / 1e6 / elapsed + py_spy_cpu / elapsed
    return {
        "window": {
            "events": events,
            "seconds": round(elapsed, 2),
            "events_per_second": round(events / elapsed, 1),
            "sampled_seconds": sampled_seconds,
            "sampled_events": round(sampled_events),
            "finished_inside": after >= total,
        },
        "samples": samples,
        "us_per_event": us,
        "cpu_us_per_event": scaled(us, proc),
        "services_us_per_event": {s: proc[s] for s in SERVICES if s in proc},
        "cpu_meter_same_window": meter,
        "others_cores_busy": round(max(0.0, meter["machine_cores_busy"] - ours), 2),
        "check": {
            "py_spy_worker_us_per_event": round(spied, 1),
            "proc_worker_us_per_event": kernel,
            "py_spy_over_proc": round(spied / kernel, 2) if kernel else None,
            "schedstat_worker_run_us_per_event": round(run_us, 1),
            "schedstat_worker_runqueue_wait_us_per_event": round(wait_us, 1),
            "py_spy_over_run_plus_wait": round(spied / (run_us + wait_us), 2),
            "py_spy_beat_us_per_event": us.get(BEAT, 0.0),
            "proc_beat_us_per_event": proc.get("beat", 0),
        },
        "py_spy": {
            "cpu_seconds": round(py_spy_cpu, 2),
            "cores_busy": round(py_spy_cpu / elapsed, 2),
            "blocking": args.blocking,
            "samples_and_errors": {n: _counts(text) for n, text in said.items()},
        },
    }


def _counts(said: str) -> list[int]:
    """[samples, errors] from py-spy's last words (``Samples: 2665 Errors: 229``); errors are
    stacks it could not read whole (with --nonblocking, a stack that changed meanwhile)."""
    found = re.search(r"Samples: (\d+) Errors: (\d+)", said)
    return [int(found[1]), int(found[2])] if found else []


def report(result: Mapping[str, Any]) -> str:
    """The run's table and the figures that say how far to trust it."""
    w, check, samples = result["window"], result["check"], result["samples"]
    lines = [f"## {result['command']}", "", markdown(result), ""]
    lines.append(
        f"window: {w['events']:,} events in {w['seconds']} s ({w['events_per_second']:,.0f} "
        f"events/s while sampled); {w['sampled_seconds']} s sampled at {result['rate']} Hz "
        f"({sum(samples.values()):,} samples, {samples.get(IDLE, 0):,} idle waits left out; "
        f"py-spy's samples and errors: {result['py_spy']['samples_and_errors']})"
    )
    lines.append(
        f"check, worker main + pool: py-spy {check['py_spy_worker_us_per_event']:,} µs/event, "
        f"/proc CPU (CpuMeter) of the same window {check['proc_worker_us_per_event']:,}: "
        f"py-spy / CPU = {check['py_spy_over_proc']}"
    )
    lines.append(
        f"  schedstat of the same window: {check['schedstat_worker_run_us_per_event']:,} µs/event "
        f"on a CPU + {check['schedstat_worker_runqueue_wait_us_per_event']:,} runnable, waiting "
        f"for one: py-spy / (run + wait) = {check['py_spy_over_run_plus_wait']}"
    )
    base = result.get("baseline")
    if base:
        b = base["cpu_us_per_event"]
        lines.append(
            f"unprofiled bench.e2e run: {base['events_per_second']:,.0f} events/s; CPU "
            f"(CpuMeter, 10-90%) worker pool {b['worker pool']} + main {b['worker main']} = "
            f"{b['worker pool'] + b['worker main']} µs/event, beat {b['beat']}, redis "
            f"{b.get('redis-server', '-')}, broker {b.get('broker', '-')}; cores busy "
            f"{base['machine_cores_busy']}"
        )
    busy = result["cpu_meter_same_window"]["machine_cores_busy"]
    lines.append(
        f"profiled window: cores busy {busy} of {os.cpu_count()}, py-spy itself "
        f"{result['py_spy']['cores_busy']}, other processes than the run's "
        f"{result['others_cores_busy']}; load average {result['load_average_start']} -> "
        f"{result['load_average_end']}"
    )
    if w["finished_inside"]:
        lines.append("WARNING: the pipeline finished inside the window: use more --records")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.side_by_side:
        print(side_by_side([json.loads(p.read_text()) for p in args.side_by_side]))
        return 0
    from bench.__main__ import filled
    from bench.e2e import run as e2e_run
    from bench.kafka_io import delete_topics
    from bench.report import machine
    from bench.services import services

    command = "python -m bench.profile" + "".join(f" {a}" for a in (argv or sys.argv[1:]))
    result: dict[str, Any] = {"command": command, "records": args.records,
                              "processes": args.processes, "execution": args.execution,
                              "rate": args.rate, "seconds": args.seconds,
                              "load_average_start": load()}  # fmt: skip
    with services() as svc, tempfile.TemporaryDirectory() as tmp:
        say(f"services: kafka {svc.kafka} ({svc.broker}), redis {svc.redis_url}")
        result["machine"] = machine(svc.broker)
        result["tree"] = tree()
        topic, _ = filled(svc, "profile", args.records, args.partitions)
        try:
            if args.baseline:
                say(f"unprofiled end-to-end run ({args.execution}, {args.processes} process)")
                result["baseline"] = e2e_run(svc, topic, args.records, args.processes,
                                             Path(tmp), execution=args.execution)  # fmt: skip
                say(f"  {result['baseline']}")
            say(f"profiled run: py-spy for {args.seconds:g} s at {args.rate} Hz")
            result.update(profile(svc, topic, args, Path(tmp)))
        finally:
            delete_topics(svc.kafka, [topic])
    result["load_average_end"] = load()
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        say(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
