"""``workers check``, ``workers topics create`` and ``workers lag``."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import click

from workers.cli import documents
from workers.cli.base import (
    EXIT_FAILED,
    State,
    command_group,
    echo_json,
    error_text,
    json_option,
    main,
    pass_state,
)
from workers.cli.params import INT16_MAX, INT32_MAX, Number
from workers.cli.screen import Screen
from workers.config.masking import clip
from workers.ops.check import run_checks
from workers.ops.context import Ops
from workers.ops.fmt import age, brake_text
from workers.ops.overview import ManyStatus, Status, statuses
from workers.ops.pace import Pace, Sample, pace
from workers.ops.status import PipelineStatus
from workers.ops.topics import create_topics

MARKS = {"ok": "ok", "warn": "WARN", "fail": "FAIL"}


@main.command()
@json_option("the findings")
@pass_state
def check(state: State, as_json: bool) -> None:
    """Validate the settings, connect to Redis, the Celery broker and every Kafka cluster, and
    look for the topics the pipelines need. Exit code 1 on any problem, one line each (on
    stderr)."""
    findings = run_checks(state.app(), state.timeout, state.secrets)
    problems = [f for f in findings if f.failed]
    if as_json:
        echo_json(documents.check(findings))
    else:
        width = max(len(f.what) for f in findings)
        for f in findings:
            click.echo(f"{MARKS[f.level]:<4}  {f.what:<{width}}  {f.detail}")
    if problems:
        click.echo(f"\n{len(problems)} problem(s):", err=True)
        for f in problems:
            hint = f"  (README troubleshooting: {f.hint})" if f.hint else ""
            click.echo(f"- {f.what}: {f.detail}{hint}", err=True)
        raise SystemExit(EXIT_FAILED)


topics = command_group("topics", "Kafka topics the configuration needs.")


@topics.command("create")
@click.option("--partitions", type=Number(int, 1, INT32_MAX), default=3, show_default=True,
              help="Partitions of each topic it creates.")  # fmt: skip
@click.option("--replication-factor", type=Number(int, 1, INT16_MAX), default=1,
              show_default=True, help="Copies of each partition of a topic it creates "
                                      "(at most the number of brokers).")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Show what would be created.")
@json_option("what was created or found")
@pass_state
def topics_create(state: State, partitions: int, replication_factor: int, dry_run: bool,
                  as_json: bool) -> None:  # fmt: skip
    """Create every pipeline's topic and dead-letter topic, and the alarm output topic, where
    missing. Existing topics are left as they are. Exit code 1 when one could not be created."""
    results = create_topics(state.ops(), partitions, replication_factor, dry_run)
    if as_json:
        echo_json(documents.topics_create(results, partitions, replication_factor, dry_run))
    else:
        for r in results:
            detail = f"  {r.detail}" if r.detail else ""
            click.echo(f"{r.status:<12}  {r.cluster}/{r.topic}{detail}")
    failed = [r for r in results if r.status == "failed"]
    if failed:
        if as_json:
            for r in failed:
                click.echo(f"failed: {r.cluster}/{r.topic}: {r.detail}", err=True)
        raise SystemExit(EXIT_FAILED)


@main.command()
@click.argument("pipelines", nargs=-1)
@click.option("--watch", is_flag=True,
              help="Redraw every --interval seconds, with the read rate and the time to catch "
                   "up, until Ctrl-C (which exits with 0).")  # fmt: skip
@click.option("--interval", type=Number(float, 0.5, 86_400), default=2.0, show_default=True,
              help="Seconds between refreshes with --watch.")  # fmt: skip
@click.option("--count", type=Number(int, 1, INT32_MAX),
              help="With --watch: stop after N refreshes (for scripts).")  # fmt: skip
@json_option("the pipelines' lag", " (with --watch: one per refresh, each on one line)")
@pass_state
def lag(state: State, pipelines: tuple[str, ...], watch: bool, interval: float,
        count: int | None, as_json: bool) -> None:  # fmt: skip
    """One line per pipeline of PIPELINES (default: all): records not yet finished, age of the
    oldest, batches in flight (and overdue ones), partitions held. --watch redraws it in place
    on a terminal (elsewhere: one snapshot after another, a blank line between) and adds the
    records committed per second since the last refresh, how fast the lag moves and the time
    to catch up at that pace (never: the lag does not shrink). Exit code 1 when a pipeline
    could not be read (with --count: at the last refresh)."""
    if count is not None and not watch:
        raise click.UsageError("--count needs --watch")
    ops = state.ops()
    names = list(pipelines) or sorted(ops.settings.pipelines)
    samples: dict[str, Sample] = {}
    screen = Screen(sys.stdout)
    refreshes = 0
    try:
        while True:
            failed = _lag_once(ops, names, samples, watch, interval, as_json, screen)
            refreshes += 1
            if not watch or (count is not None and refreshes >= count):
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        if not watch:
            raise
        return  # Ctrl-C is how --watch ends
    finally:
        screen.close()
    if failed:
        raise SystemExit(EXIT_FAILED)


def _lag_once(ops: Ops, names: list[str], samples: dict[str, Sample], watch: bool,
              interval: float, as_json: bool, screen: Screen) -> bool:  # fmt: skip
    """One refresh; True when a pipeline could not be read. ``samples``: the last look at
    each pipeline (and at each topic of a pipeline over many), replaced by this one."""
    rows: list[tuple[str, Status | str]] = [
        (name, error_text(r) if isinstance(r, Exception) else r)
        for name, r in zip(names, statuses(ops, names), strict=True)
    ]
    now = time.monotonic()
    paces: dict[str, Pace] = {}
    for name, r in rows:
        if isinstance(r, str) or not watch:
            continue
        looks = [(name, r)]
        if isinstance(r, ManyStatus):
            looks += [(documents.pace_key(name, r, one), one) for one in r.topics]
        for key, look in looks:
            sample = Sample.of(look, now)
            paces[key] = pace(samples.get(key), sample)
            samples[key] = sample
    failed = any(isinstance(r, str) for _, r in rows)
    if as_json:
        echo_json(documents.lag(rows, paces), compact=watch)
        for _, r in rows:
            if isinstance(r, str):
                click.echo(f"error: {r}", err=True)
        return failed
    lines: list[str] = []
    for name, r in rows:
        if isinstance(r, str):
            lines.append(f"error: {r}")
        elif isinstance(r, ManyStatus):
            lines += _many_lines(name, r, paces)
        else:
            lines.append(_lag_line(r, paces.get(name)))
    if watch:
        head = time.strftime("%H:%M:%S") + f"  every {interval:g}s, Ctrl-C to stop"
        screen.draw([head, *lines])
    else:
        click.echo("\n".join(lines))
    return failed


def _lag_line(row: PipelineStatus, paced: Pace | None) -> str:
    p = row.pipeline
    return _line([p.name, f"{p.cluster}/{p.topic}"], row, paced, brake_text)


def _many_lines(name: str, row: ManyStatus, paces: dict[str, Pace]) -> list[str]:
    """A pipeline over many topics: its totals, then one indented line per topic."""
    p = row.pipeline
    n = len(row.topics)
    where = [p.name, f"{p.cluster}/{p.source} ({n:,} topic{'' if n == 1 else 's'})"]
    if row.missing:
        where.append(f"missing {clip(', '.join(row.missing), 200)}")
    if not row.topics:
        what = "no listed topic exists" if p.topics else "no topic matches"
        return ["  ".join([*where, f"{what} now"])]

    def tripped(_: Any) -> str:
        return f"{len(row.tripped):,} topic(s), see below"

    out = [_line(where, row, paces.get(name), tripped)]
    for t in row.topics:
        paced = paces.get(documents.pace_key(name, row, t))
        out.append("  " + _line([t.pipeline.topic], t, paced, brake_text))
    return out


def _line(where: list[str], row: Status, paced: Pace | None,
          brake: Callable[[Any], str]) -> str:  # fmt: skip
    """The line of ``workers lag``: ``where`` (what it reads), then the numbers of ``row``;
    ``brake`` says a tripped dead-letter brake."""
    p = row.pipeline
    rate = "" if paced is None else _pace_text(paced)
    last_ms = row.counters.get("last_ms", 0)
    last = age((row.now_ms - last_ms) / 1000) + " ago" if last_ms else "never"
    if not row.started:
        return "  ".join([*where, f"not started (starts at {p.start})"])
    flight = row.flight
    parts: list[Any] = [
        *where, f"lag {row.lag or 0:,}", f"oldest {age(row.oldest_age)}",
        f"in flight {flight.batches:,} batches ({flight.records:,} records)",
        f"held {row.held}/{len(row.partitions)}", f"last pull {last}",
    ]  # fmt: skip
    at = len(where)
    if flight.overdue:
        parts.insert(at + 3, f"OVERDUE {flight.overdue:,}")
    stopped = row.brake is not None if isinstance(row, PipelineStatus) else bool(row.tripped)
    if stopped:
        parts.insert(at, f"STOPPED BY THE DEAD-LETTER BRAKE ({brake(row)})")
    counted = [(row.counters.get(name, 0), label) for name, label in DELIVERY]
    if any(n for n, _ in counted):
        parts.append(", ".join(f"{label} {n:,}" for n, label in counted if n))
    return "  ".join(parts) + rate


def _pace_text(paced: Pace) -> str:
    """``  read 1,234/s  lag -56/s  catch up 3m12s`` (``-``: not known yet)."""
    read = "-" if paced.rate is None else f"{paced.rate:,.0f}/s"
    change = "-" if paced.change is None else f"{paced.change:+,.0f}/s"
    return f"  read {read}  lag {change}  catch up {paced.catch_up_text()}"


# Delivery counters shown when not zero: batches handed off again, split, records abandoned to
# the dead-letter topic after crashing their worker, records dead-lettered in all.
DELIVERY = (("redriven", "re-driven"), ("split", "split"), ("abandoned", "abandoned"),
            ("dead_lettered", "dead-lettered"))  # fmt: skip
