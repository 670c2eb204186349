"""``workers check``, ``workers topics create`` and ``workers lag``."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from workers.cli.base import State, command_group, error_text, main, pass_state
from workers.cli.params import INT16_MAX, INT32_MAX, Number
from workers.ops.check import run_checks
from workers.ops.context import Ops
from workers.ops.fmt import age
from workers.ops.status import PipelineStatus, statuses
from workers.ops.topics import create_topics

MARKS = {"ok": "ok", "warn": "WARN", "fail": "FAIL"}


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@pass_state
def check(state: State, as_json: bool) -> None:
    """Validate the settings, connect to Redis, the Celery broker and every Kafka cluster, and
    look for the topics the pipelines need. Exit code 1 on any problem, one line each."""
    findings = run_checks(state.app(), state.timeout, state.secrets)
    problems = [f for f in findings if f.failed]
    if as_json:
        rows = [{"what": f.what, "level": f.level, "detail": f.detail, "hint": f.hint}
                for f in findings]  # fmt: skip
        click.echo(json.dumps({"ok": not problems, "findings": rows}, indent=2))
    else:
        width = max(len(f.what) for f in findings)
        for f in findings:
            click.echo(f"{MARKS[f.level]:<4}  {f.what:<{width}}  {f.detail}")
    if problems:
        click.echo(f"\n{len(problems)} problem(s):", err=True)
        for f in problems:
            hint = f"  (README troubleshooting: {f.hint})" if f.hint else ""
            click.echo(f"- {f.what}: {f.detail}{hint}", err=True)
        raise SystemExit(1)


topics = command_group("topics", "Kafka topics the configuration needs.")


@topics.command("create")
@click.option("--partitions", type=Number(int, 1, INT32_MAX), default=3, show_default=True)
@click.option("--replication-factor", type=Number(int, 1, INT16_MAX), default=1,
              show_default=True)  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Show what would be created.")
@pass_state
def topics_create(state: State, partitions: int, replication_factor: int, dry_run: bool) -> None:
    """Create every pipeline's topic and dead-letter topic, and the alarm output topic, where
    missing. Existing topics are left as they are."""
    results = create_topics(state.ops(), partitions, replication_factor, dry_run)
    for r in results:
        click.echo(f"{r.status:<12}  {r.cluster}/{r.topic}" + (f"  {r.detail}" if r.detail else ""))
    if any(r.status == "failed" for r in results):
        raise SystemExit(1)


@main.command()
@click.argument("pipelines", nargs=-1)
@click.option("--watch", is_flag=True, help="Refresh until Ctrl-C.")
@click.option("--interval", type=Number(float, 0.5, 86_400), default=2.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per pipeline per line.")
@pass_state
def lag(state: State, pipelines: tuple[str, ...], watch: bool, interval: float,
        as_json: bool) -> None:  # fmt: skip
    """One line per pipeline: records not yet finished, age of the oldest, batches in flight
    (and overdue ones), partitions held, and (with --watch) the read rate."""
    ops = state.ops()
    before: dict[str, tuple[float, int]] = {}
    try:
        while True:
            failed = _lag_once(ops, pipelines, before, watch, interval, as_json)
            if not watch:
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        if not watch:
            raise
        return  # Ctrl-C is how --watch ends
    if failed:
        raise SystemExit(1)


def _lag_once(ops: Ops, pipelines: tuple[str, ...], before: dict[str, tuple[float, int]],
              watch: bool, interval: float, as_json: bool) -> bool:  # fmt: skip
    """One refresh; True when a pipeline could not be read."""
    lines = []
    failed = False
    for row in statuses(ops, list(pipelines) or None):
        if isinstance(row, Exception):
            failed = True
            lines.append(f"error: {error_text(row)}")
        else:
            lines.append(json.dumps(row.as_dict()) if as_json else _lag_line(row, before))
    if watch and not as_json:
        click.clear()
        click.echo(time.strftime("%H:%M:%S") + f"  every {interval:g}s, Ctrl-C to stop")
    click.echo("\n".join(lines))
    return failed


def _lag_line(row: PipelineStatus, before: dict[str, tuple[float, int]]) -> str:
    p = row.pipeline
    now = time.monotonic()
    rate = ""
    if p.name in before:
        then, read = before[p.name]
        rate = f"  {(row.read - read) / max(now - then, 1e-6):,.0f}/s"
    before[p.name] = (now, row.read)
    last_ms = row.counters.get("last_ms", 0)
    last = age((row.now_ms - last_ms) / 1000) + " ago" if last_ms else "never"
    if not row.started:
        return f"{p.name}  {p.cluster}/{p.topic}  not started (starts at {p.start})"
    flight = row.flight
    parts: list[Any] = [
        p.name, f"{p.cluster}/{p.topic}", f"lag {row.lag or 0:,}", f"oldest {age(row.oldest_age)}",
        f"in flight {flight.batches:,} batches ({flight.records:,} records)",
        f"held {row.held}/{len(row.partitions)}", f"last pull {last}",
    ]  # fmt: skip
    if flight.overdue:
        parts.insert(5, f"OVERDUE {flight.overdue:,}")
    counted = [(row.counters.get(name, 0), label) for name, label in DELIVERY]
    if any(n for n, _ in counted):
        parts.append(", ".join(f"{label} {n:,}" for n, label in counted if n))
    return "  ".join(parts) + rate


# Delivery counters shown when not zero: batches handed off again, split, records abandoned to
# the dead-letter topic after crashing their worker, records dead-lettered in all.
DELIVERY = (("redriven", "re-driven"), ("split", "split"), ("abandoned", "abandoned"),
            ("dead_lettered", "dead-lettered"))  # fmt: skip
