"""``python -m bench``: every scenario in one run, side by side, so the ratios hold on a noisy
machine. See bench/README.md."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import e2e, latency, memory, scale, throughput
from bench.events import stream
from bench.kafka_io import delete_topics, fill
from bench.origin import origin
from bench.report import LABELS, Figure, machine, ratios, table, targets, write
from bench.services import Services, services
from workers.testing import create_topics

SCENARIOS = ("raw", "origin", "pull", "raw_confluent", "pull_confluent", "e2e", "latency", "memory",
             "scale")  # fmt: skip
READERS: dict[str, Callable[..., float]] = {
    "raw": throughput.raw,
    "origin": origin,
    "pull": throughput.pull,
    "raw_confluent": throughput.raw_confluent,
    "pull_confluent": throughput.pull_confluent,
}
# librdkafka's figures (the [confluent] extra): asked for by name, not in a default run.
CONFLUENT = ("raw_confluent", "pull_confluent")
DEFAULT_JSON = Path(__file__).resolve().parent / "results.json"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--records", type=int, help="records read by raw, origin and pull (300000)")
    p.add_argument("--e2e-records", type=int, help="events per end-to-end run (100000)")
    p.add_argument("--memory-records", type=int, help="backlog of the memory run (1000000)")
    p.add_argument("--memory-baseline", type=int, default=10_000,
                   help="events after which the baseline RSS is read (10000)")  # fmt: skip
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--repeat", type=int, help="repetitions of each figure (3)")
    p.add_argument("--memory-repeat", type=int, default=1)
    p.add_argument("--latency-seconds", type=float, help="measured seconds per run (20)")
    p.add_argument("--latency-warmup", type=float, help="seconds before measuring (5)")
    p.add_argument(
        "--latency-rate",
        type=float,
        default=1000.0,
        help="events/s of the latency runs (%(default)s)",
    )
    p.add_argument(
        "--latency-execution",
        default="fused",
        choices=("chain", "fused"),
        help="how the latency runs' pipeline runs its stages (%(default)s)",
    )
    p.add_argument(
        "--execution",
        default="chain,fused",
        help="execution modes of the end-to-end runs, comma-separated (%(default)s)",
    )
    p.add_argument(
        "--memory-execution",
        default="fused",
        choices=("chain", "fused"),
        help="how the memory run's pipeline runs its stages (%(default)s)",
    )
    p.add_argument("--only", help="comma-separated, of " + ",".join(SCENARIOS) + " (all; "
                   + ",".join(CONFLUENT) + " only with confluent-kafka installed)")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where results go")
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {"records": (300_000, 20_000), "e2e_records": (100_000, 6_000),
                "memory_records": (1_000_000, 20_000), "repeat": (3, 1),
                "latency_seconds": (20.0, 3.0), "latency_warmup": (5.0, 1.0)}  # fmt: skip
    for name, (full, small) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    args.memory_baseline = min(args.memory_baseline, args.memory_records // 2)
    if args.only is None:  # librdkafka's peers when the [confluent] extra is installed
        args.only = ",".join(s for s in SCENARIOS if s not in CONFLUENT or _has_confluent())
    unknown = set(args.only.split(",")) - set(SCENARIOS)
    if unknown:
        p.error(f"--only: unknown scenario(s) {', '.join(sorted(unknown))}")
    args.executions = [x.strip() for x in args.execution.split(",") if x.strip()]
    if not args.executions or set(args.executions) - {"chain", "fused"}:
        p.error(f"--execution: 'chain', 'fused' or both, comma-separated; got {args.execution!r}")
    if set(args.only.split(",")) & set(CONFLUENT) and not _has_confluent():
        p.error("--only: raw_confluent and pull_confluent need confluent-kafka: "
                "pip install 'celery-kafka-workers[confluent]'")  # fmt: skip
    return args


def _has_confluent() -> bool:
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        return False
    return True


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def filled(svc: Services, name: str, records: int, partitions: int) -> tuple[str, dict[int, int]]:
    topic = f"bench-{uuid.uuid4().hex[:8]}-{name}"
    create_topics(svc.kafka, {topic: partitions})
    started = time.monotonic()
    ends = fill(svc.kafka, topic, stream(records, int(time.time() * 1000)), partitions)
    say(f"filled {topic}: {records:,} events in {time.monotonic() - started:.1f} s")
    return topic, ends


def measure(
    figures: dict[str, Figure], key: str, rep: int, fn: Callable[..., float], *args: Any
) -> None:
    value = fn(*args)
    figures.setdefault(key, Figure()).runs.append(value)
    say(f"  {key} {rep}: {value:,.1f} {LABELS[key][1]}")


def run(args: argparse.Namespace, svc: Services, tmp: Path) -> dict[str, Any]:
    only = set(args.only.split(","))
    figures: dict[str, Figure] = {}
    details: dict[str, Any] = {}
    notes: list[str] = []
    topics: list[str] = []
    try:
        readers = [name for name in READERS if name in only]
        if readers:
            topic, ends = filled(svc, "warm-up", min(5000, args.records), args.partitions)
            topics.append(topic)
            for name in readers:  # imports, connections, scripts: not measured
                READERS[name](svc, topic, ends)
            topic, ends = filled(svc, "read", args.records, args.partitions)
            topics.append(topic)
            for i in range(args.repeat):  # interleaved, so that drift hits all alike
                for name in readers:
                    measure(figures, name, i + 1, READERS[name], svc, topic, ends)
        if "e2e" in only:
            topic, _ = filled(svc, "e2e", args.e2e_records, args.partitions)
            topics.append(topic)
            details["e2e"] = []
            for i in range(args.repeat):
                for execution in args.executions:
                    for n in (1, 2):
                        found = e2e.run(svc, topic, args.e2e_records, n, tmp, execution)
                        details["e2e"].append(found)
                        key = f"e2e_{execution}_{n}"
                        measure(figures, key, i + 1, float, found["events_per_second"])
                        cpu = sum(us for role, us in found["cpu_us_per_event"].items()
                                  if role != "bench")  # fmt: skip
                        measure(figures, f"cpu_{execution}_{n}", i + 1, float, cpu)
        if "latency" in only:
            rate = args.latency_rate
            notes.append(f"latency at {rate:,.0f} events/s, stages {args.latency_execution}, "
                         f"{args.latency_seconds:g} s measured after {args.latency_warmup:g} s "
                         "of warm-up")  # fmt: skip
            details["latency"] = []
            for i in range(args.repeat):
                for mode in ("long_lived", "beat"):
                    found = latency.run(svc, mode, rate, args.latency_seconds,
                                        args.latency_warmup, tmp,
                                        args.latency_execution)  # fmt: skip
                    details["latency"].append({"mode": mode, **found})
                    for q in ("p50", "p95", "p99"):
                        figures.setdefault(f"latency_{mode}_{q}", Figure()).runs.append(found[q])
                    say(f"  latency {mode} {i + 1}: p50 {found['p50']:.0f} ms, "
                        f"p99 {found['p99']:.0f} ms")  # fmt: skip
        if "memory" in only:
            topic, _ = filled(svc, "memory", args.memory_records, args.partitions)
            topics.append(topic)
            details["memory"] = []
            for i in range(args.memory_repeat):
                found = memory.run(svc, topic, args.memory_records, args.memory_baseline, tmp,
                                   args.memory_execution)  # fmt: skip
                details["memory"].append(found)
                figures.setdefault("memory_ratio", Figure()).runs.append(found["max_ratio"])
                say(f"  memory {i + 1}: {found}")
            notes.append(f"memory: backlog of {args.memory_records:,} records, baseline RSS "
                         f"after {args.memory_baseline:,} events")  # fmt: skip
        if "scale" in only:
            details["scale"] = scale.run(svc, scale.QUICK if args.quick else scale.FULL, say)
    finally:
        delete_topics(svc.kafka, topics)
    shown = {k: f.as_dict(LABELS[k][1]) for k, f in figures.items()}
    medians = {k: v["median"] for k, v in shown.items()}
    found = targets(medians) + details.get("scale", {}).get("targets", [])
    return {"figures": shown, "details": details, "notes": notes,
            "ratios": ratios(medians), "targets": found}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    command = "python -m bench" + "".join(f" {a}" for a in (argv or sys.argv[1:]))
    with services() as svc, tempfile.TemporaryDirectory() as tmp:
        say(f"services: kafka {svc.kafka} ({svc.broker}), redis {svc.redis_url}")
        result: dict[str, Any] = {"command": command, "machine": machine(svc.broker)}
        sizes = {"records": args.records, "e2e_records": args.e2e_records,
                 "memory_records": args.memory_records, "partitions": args.partitions,
                 "repeat": args.repeat, "quick": args.quick}  # fmt: skip
        result["sizes"] = sizes
        result.update(run(args, svc, Path(tmp)))
        result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(table(result))
    if "scale" in result["details"]:
        print("\n" + scale.table(result["details"]["scale"]))
    write(result, args.json)
    say(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
