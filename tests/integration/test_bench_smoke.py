"""``python -m bench --quick`` runs every scenario on tiny sizes and writes a complete JSON
file: it keeps the benchmark from rotting. Nothing here looks at how fast anything was."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
try:
    import confluent_kafka  # noqa: F401

    CONFLUENT: tuple[str, ...] = ("raw_confluent", "pull_confluent")
except ImportError:  # librdkafka's peers run only with the [confluent] extra
    CONFLUENT = ()
FIGURES = (
    "raw",
    "origin",
    "pull",
    *CONFLUENT,
    *(f"{kind}_{x}_{n}" for kind in ("e2e", "cpu") for x in ("chain", "fused") for n in (1, 2)),
    *(f"latency_{mode}_{q}" for mode in ("long_lived", "beat") for q in ("p50", "p95", "p99")),
    "memory_ratio",
)
RATIOS = {"pull / origin", "pull / raw", "origin / raw", "e2e_fused_2 / e2e_chain_2",
          "cpu_fused_2 / cpu_chain_2"}  # fmt: skip
CONFLUENT_RATIOS = {"raw_confluent / raw", "pull_confluent / raw", "pull_confluent / pull",
                    "pull_confluent / raw_confluent"}  # fmt: skip


def number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.timeout(900)
def test_quick_run_writes_every_section_with_numbers(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "results.json"
    env = {
        **os.environ,
        "WORKERS_BENCH_KAFKA": kafka_bootstrap,  # the session's services, not a second pair
        "WORKERS_BENCH_REDIS": redis_url,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=800,
    )  # fmt: skip

    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["sizes"]["quick"] is True
    assert set(result["figures"]) == set(FIGURES)
    for name, figure in result["figures"].items():
        assert figure["runs"], name
        assert all(number(v) for v in [*figure["runs"], figure["median"], figure["min"]]), name
        assert figure["min"] <= figure["median"] <= figure["max"], name
    ratios = {r["ratio"]: r["value"] for r in result["ratios"]}
    assert set(ratios) == RATIOS | (CONFLUENT_RATIOS if CONFLUENT else set())
    assert all(number(v) and v > 0 for v in ratios.values())
    assert len(result["targets"]) == (8 if CONFLUENT else 7) + 2  # scale: flat, under interval
    assert all(number(t["value"]) and isinstance(t["met"], bool) for t in result["targets"])
    (memory,) = result["details"]["memory"]
    assert memory["records"] == 20_000
    assert {row["process"] for row in memory["processes"]} == {"main", "pool"}
    assert all(len(row["rss_kib_at_marks"]) == len(memory["marks"]) for row in memory["processes"])
    runs = [(run["execution"], run["processes"]) for run in result["details"]["e2e"]]
    assert runs == [("chain", 1), ("chain", 2), ("fused", 1), ("fused", 2)]
    for run in result["details"]["e2e"]:
        assert all(number(v) for v in run["cpu_us_per_event"].values())
    assert {run["mode"] for run in result["details"]["latency"]} == {"long_lived", "beat"}
    scale = result["details"]["scale"]
    cases = [(r["pipeline"], r["variant"], r["partitions"]) for r in scale["rows"]]
    assert cases == [*(("pattern", v, n) for n in (5, 20) for v in ("idle", "look", "busy")),
                     ("topic", "idle", 10)]  # fmt: skip
    for row in scale["rows"]:
        assert len(row["ms"]) == row["cycles"] and all(number(v) for v in row["ms"]), row
        assert row["redis_commands"] > 0 and row["redis_round_trips"] > 0, row
        assert row["kafka_requests"] >= 1 and row["load_average"], row
    assert scale["empty_topics"]["topics"] == 2 and number(scale["empty_topics"]["seconds"])
    machine = result["machine"]
    assert machine["cores"] >= 1 and machine["python"] and machine["kafka-python"]
    assert "target" in done.stdout and "pull / origin" in done.stdout  # the table was printed
    assert "one Beat pull cycle" in done.stdout  # and the scale table
