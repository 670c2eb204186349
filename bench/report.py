"""Figures (median, min, max of the repetitions), the ratios of the readers and the targets, as
ratios of medians measured in the same run, the machine, the printed table and the JSON file."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

LABELS = {
    "raw": ("raw consumer (kafka-python, assign + poll)", "records/s"),
    "origin": ("origin's take() (GET, seek, poll, SET, 1 Celery message)", "records/s"),
    "pull": ("pull path (lease, seek, poll, decode, hand-off, commit)", "records/s"),
    "raw_confluent": ("raw consumer (confluent-kafka, assign + consume)", "records/s"),
    "pull_confluent": ("pull path, client_library confluent (librdkafka)", "records/s"),
    **{
        f"{kind}_{execution}_{n}": (
            f"{what} {execution}, {n} worker process{'es' if n > 1 else ''}",
            unit,
        )
        for kind, what, unit in (
            ("e2e", "end to end", "events/s"),
            ("cpu", "CPU per event, all processes,", "µs"),
        )
        for execution in ("chain", "fused")
        for n in (1, 2)
    },
    "latency_long_lived_p50": ("latency, long-lived mode, p50", "ms"),
    "latency_long_lived_p95": ("latency, long-lived mode, p95", "ms"),
    "latency_long_lived_p99": ("latency, long-lived mode, p99", "ms"),
    "latency_beat_p50": ("latency, Beat mode, p50", "ms"),
    "latency_beat_p95": ("latency, Beat mode, p95", "ms"),
    "latency_beat_p99": ("latency, Beat mode, p99", "ms"),
    "memory_ratio": ("worker RSS: peak / after the baseline records (max)", "ratio"),
}


@dataclass
class Figure:
    runs: list[float] = field(default_factory=list)

    def as_dict(self, unit: str) -> dict[str, Any]:
        return {
            "unit": unit,
            "runs": [round(r, 3) for r in self.runs],
            "median": round(statistics.median(self.runs), 3),
            "min": round(min(self.runs), 3),
            "max": round(max(self.runs), 3),
        }


@dataclass(frozen=True)
class Target:
    name: str
    needs: tuple[str, ...]
    value: Callable[[dict[str, float]], float]
    ok: Callable[[float], bool]
    shown: str  # how the value reads


TARGETS = (
    Target("pull >= 1.3 x the origin's take()", ("pull", "origin"),
           lambda m: m["pull"] / m["origin"], lambda v: v >= 1.3, "{:.2f} x origin"),
    Target("pull >= 0.9 x raw", ("pull", "raw"), lambda m: m["pull"] / m["raw"],
           lambda v: v >= 0.9, "{:.2f} x raw"),
    Target("pull (confluent) >= 2 x raw (kafka-python)", ("pull_confluent", "raw"),
           lambda m: m["pull_confluent"] / m["raw"], lambda v: v >= 2.0, "{:.2f} x raw"),
    Target("end to end fused, 2 processes: CPU per event <= 80 us", ("cpu_fused_2",),
           lambda m: m["cpu_fused_2"], lambda v: v <= 80, "{:.0f} us"),
    Target("end to end fused, 2 processes >= 0.2 x raw", ("e2e_fused_2", "raw"),
           lambda m: m["e2e_fused_2"] / m["raw"], lambda v: v >= 0.2, "{:.3f} x raw"),
    Target("end to end fused, 2 processes >= 1.7 x 1 process", ("e2e_fused_2", "e2e_fused_1"),
           lambda m: m["e2e_fused_2"] / m["e2e_fused_1"], lambda v: v >= 1.7,
           "{:.2f} x 1 process"),
    Target("long-lived p99 latency at 1,000 events/s <= 250 ms", ("latency_long_lived_p99",),
           lambda m: m["latency_long_lived_p99"], lambda v: v <= 250, "{:.0f} ms"),
    Target("worker RSS under the backlog <= 1.5 x RSS after 10,000 records", ("memory_ratio",),
           lambda m: m["memory_ratio"], lambda v: v <= 1.5, "{:.2f} x"),
)  # fmt: skip


# The readers side by side: (numerator, denominator), each a median of the same run.
RATIOS = (("pull", "origin"), ("pull", "raw"), ("origin", "raw"), ("raw_confluent", "raw"),
          ("pull_confluent", "raw"), ("pull_confluent", "pull"),
          ("pull_confluent", "raw_confluent"), ("e2e_fused_2", "e2e_chain_2"),
          ("cpu_fused_2", "cpu_chain_2"))  # fmt: skip


def ratios(medians: dict[str, float]) -> list[dict[str, Any]]:
    return [
        {"ratio": f"{a} / {b}", "value": round(medians[a] / medians[b], 3)}
        for a, b in RATIOS
        if a in medians and b in medians and medians[b]
    ]


def machine(broker: str) -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "cores": os.cpu_count(),
        "cpu": model or platform.processor(),
        "python": platform.python_version(),
        "kafka-python": version("kafka-python"),
        "confluent-kafka": version("confluent-kafka"),
        "celery": version("celery"),
        "redis-py": version("redis"),
        "orjson": version("orjson"),
        "broker": broker,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def targets(medians: dict[str, float]) -> list[dict[str, Any]]:
    out = []
    for target in TARGETS:
        if all(name in medians for name in target.needs):
            value = target.value(medians)
            out.append({"target": target.name, "value": round(value, 3),
                        "shown": target.shown.format(value), "met": target.ok(value)})  # fmt: skip
    return out


def table(result: dict[str, Any]) -> str:
    """The results as a fixed-width text table (also used in bench/README.md)."""
    m = result["machine"]
    lines = [
        f"{m['cores']} cores, {m['cpu']}; Python {m['python']}, kafka-python {m['kafka-python']}, "
        f"broker: {m['broker']}",
        f"sizes: {json.dumps(result['sizes'])}",
        "",
        f"{'figure':<58}{'median':>10}{'min':>10}{'max':>10}  {'unit'}",
    ]
    for key, figure in result["figures"].items():
        label, _ = LABELS[key]
        lines.append(
            f"{label:<58}{_num(figure['median']):>10}{_num(figure['min']):>10}"
            f"{_num(figure['max']):>10}  {figure['unit']}"
        )
    for note in result.get("notes", []):
        lines.append(f"  {note}")
    if result.get("ratios"):
        lines += ["", f"{'ratio (medians of this run)':<64}{'measured':>20}"]
        for r in result["ratios"]:
            lines.append(f"{r['ratio']:<64}{r['value']:>18.2f} x")
    lines += ["", f"{'target':<64}{'measured':>20}  result"]
    for t in result["targets"]:
        lines.append(f"{t['target']:<64}{t['shown']:>20}  {'met' if t['met'] else 'MISSED'}")
    return "\n".join(lines)


def _num(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def write(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
