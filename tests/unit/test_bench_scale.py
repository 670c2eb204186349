"""``bench.scale``: the targets come from the right rows (the pattern pipelines' idle cycles,
the two largest), and the table shows every row. The measured run itself is not a test."""

from __future__ import annotations

from typing import Any

from bench import scale


def row(pipeline: str, variant: str, partitions: int, ms: float) -> dict[str, Any]:
    return {
        "pipeline": pipeline,
        "variant": variant,
        "case": f"{pipeline} {variant} {partitions}",
        "partitions": partitions,
        "ms_median": ms,
        "ms_min": ms,
        "ms_max": ms,
        "us_per_partition": ms * 1000 / partitions,
        "cpu_ms": ms / 2,
        "redis_cpu_ms": ms / 4,
        "share_of_interval": ms / 1000,
        "redis_commands": 4 * partitions + 1,
        "redis_scripts": partitions,
        "redis_round_trips": 2,
        "kafka_requests": 1,
    }


ROWS = [
    row("pattern", "idle", 1000, 60.0),  # 60 us per partition
    row("pattern", "idle", 10, 1.0),
    row("pattern", "idle", 100, 5.0),  # 50 us per partition
    row("pattern", "look", 1000, 900.0),  # neither a look...
    row("pattern", "busy", 1000, 900.0),  # ...nor a busy cycle counts
    row("topic", "idle", 5000, 1.0),  # nor the one-topic pipeline
]


def test_targets_compare_the_two_largest_idle_pattern_cycles() -> None:
    flat, under = scale.targets(ROWS)

    assert flat["target"] == "idle cycle: us per partition at 1,000 topics <= 1.5 x at 100"
    assert flat["value"] == 1.2 and flat["met"] is True
    assert under["target"] == "idle cycle over 1,000 topics <= 0.25 x the interval"
    assert under["value"] == 0.06 and under["met"] is True


def test_targets_are_missed_when_the_cost_per_partition_grows() -> None:
    rows = [row("pattern", "idle", 100, 5.0), row("pattern", "idle", 1000, 300.0)]

    flat, under = scale.targets(rows)

    assert flat["value"] == 6.0 and flat["met"] is False
    assert under["value"] == 0.3 and under["met"] is False


def test_no_targets_without_two_sizes() -> None:
    assert scale.targets([row("pattern", "idle", 100, 5.0), row("topic", "idle", 100, 1.0)]) == []


def test_the_table_shows_every_row_and_the_empty_topics() -> None:
    empty = {"topics": 10, "cycles": 2, "seconds": 5.3, "cycle_seconds": 5.1,
             "seconds_per_topic": 0.51}  # fmt: skip

    text = scale.table({"rows": ROWS, "empty_topics": empty})

    assert all(r["case"] in text for r in ROWS)
    assert "10 new empty topics: idle after 2 cycles, 5.1 s of cycles (0.51 s a topic)" in text


def test_busy_topics_are_one_percent_and_at_least_one() -> None:
    assert [scale.busy_count(n) for n in (5, 10, 100, 250, 1000)] == [1, 1, 1, 2, 10]
