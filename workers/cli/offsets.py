"""``workers offsets show`` and ``workers offsets reset``."""

from __future__ import annotations

import json

import click

from workers.cli.base import State, command_group, error_text, pass_state
from workers.cli.params import INT32_MAX, Number, ResetTarget
from workers.config.masking import clip
from workers.ops.fmt import age, table
from workers.ops.status import PipelineStatus, statuses
from workers.pulling.positions import ResetRow, edges, reset_offsets

offsets = command_group("offsets", "Stored read positions per partition: show and reset.")


@offsets.command("show")
@click.argument("pipeline", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--no-ages", is_flag=True, help="Skip reading the oldest unread record's time.")
@pass_state
def show(state: State, pipeline: str | None, as_json: bool, no_ages: bool) -> None:
    """Per partition: committed offset, log start and end, lag (records, and age of the oldest
    record not finished), batches in flight (batches/records, overdue), lease holder and
    expiry. All pipelines when none is named."""
    rows = statuses(state.ops(), [pipeline] if pipeline else None, ages=not no_ages)
    if pipeline and isinstance(rows[0], Exception):
        raise rows[0]
    if as_json:
        out = [r.as_dict() if isinstance(r, PipelineStatus) else {"error": error_text(r)}
               for r in rows]  # fmt: skip
        click.echo(json.dumps(out if not pipeline else out[0], indent=2))
    else:
        click.echo("\n\n".join(_render(r) for r in rows))
    if any(isinstance(r, Exception) for r in rows):
        raise SystemExit(1)


def _render(row: PipelineStatus | Exception) -> str:
    if isinstance(row, Exception):
        return f"error: {error_text(row)}"
    p = row.pipeline
    head = (f"pipeline {p.name}: {p.cluster}/{p.topic}, group {p.group}, {p.mode}; "
            f"lag {_n(row.lag)}, oldest unread {age(row.oldest_age)}")  # fmt: skip
    lines = []
    for s in row.partitions:
        h = s.holder
        holder = f"{h.host}:{h.pid} {h.task}".strip() if h else None
        expires = f"{h.expires_in:.0f}s" if h else None
        oldest = age((row.now_ms - s.oldest_ms) / 1000) if s.oldest_ms is not None else None
        f = s.flight
        flying = f"{f.batches}/{f.records}" + (f" ({f.overdue} overdue)" if f.overdue else "")
        lines.append([s.partition, s.stored, s.log_start, s.log_end, s.lag, oldest, flying,
                      holder, expires, s.skipped])  # fmt: skip
    headers = ["partition", "committed", "log start", "log end", "lag", "oldest",
               "in flight", "holder", "expires", "skipped"]  # fmt: skip
    note = "" if row.started else f"\nnothing stored yet: the first pull starts at {p.start}"
    return head + "\n" + table(headers, lines) + note


@offsets.command("reset")
@click.argument("pipeline")
@click.option("--to", "target", required=True, type=ResetTarget(),
              metavar="earliest|latest|OFFSET|TIME",
              help="A time is ISO 8601 (2026-11-24T10:00+08:00), relative (-1h, -30m) or "
                   "@epoch seconds/milliseconds.")  # fmt: skip
@click.option("--partition", "partitions", type=Number(int, 0, INT32_MAX), multiple=True,
              help="Reset only this partition (repeatable). Default: all.")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Show before/after and change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def reset(state: State, pipeline: str, target: str, partitions: tuple[int, ...],
          dry_run: bool, yes: bool) -> None:  # fmt: skip
    """Move a pipeline's stored offsets. A pull that read before the reset cannot write over
    it; running consumers continue from the new offsets at their next cycle."""
    ops = state.ops()
    config = ops.pipeline(pipeline)
    space = ops.space(config)
    consumer = ops.connections.consumer(config.cluster)
    chosen = list(partitions) or None
    known = ops.partitions(config.cluster, config.topic)
    unknown = sorted(set(chosen or ()) - set(known))
    if unknown:
        raise click.BadParameter(
            f"no partition {clip(', '.join(map(str, unknown)), 80)} in {config.topic!r} "
            f"(it has {_spans(known)})",
            param_hint="--partition",
        )
    try:
        preview = reset_offsets(ops.store(), consumer, space, target, chosen, dry_run=True)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--to") from None
    click.echo(f"pipeline {pipeline}: {config.cluster}/{config.topic}, group {config.group}")
    click.echo(_rows(preview))
    bounds = edges(consumer, config.topic, [r.partition for r in preview])
    outside = [r.partition for r in preview
               if not bounds[r.partition][0] <= r.after <= bounds[r.partition][1]]  # fmt: skip
    if outside:
        where = ", ".join(f"{p}: {bounds[p][0]}..{bounds[p][1]}" for p in outside)
        policy = config.out_of_range
        click.echo(f"partitions {outside}: the new offset is outside the log ({where}); "
                   f"the pipeline's out_of_range policy ({policy}) will move it")  # fmt: skip
    if dry_run:
        click.echo("dry run: nothing changed")
        return
    held = ops.leases(config).holders(space, [r.partition for r in preview])
    if held:
        click.echo(f"{len(held)} of these partitions are being read now; the reset wins "
                   "(their holders' next commit is refused and they read from here)")  # fmt: skip
    if not yes:
        click.confirm(f"Reset {len(preview)} partition(s) to {target}?", abort=True)
    done = reset_offsets(ops.store(), consumer, space, target, chosen)
    if [r.after for r in done] != [r.after for r in preview]:
        click.echo("the targets moved while you confirmed (new records); stored:")
        click.echo(_rows(done))
    click.echo(f"reset {len(done)} partition(s)")


def _spans(partitions: list[int]) -> str:
    """``0-5, 8``: partition numbers as ranges, so a topic with many stays one short line."""
    spans: list[list[int]] = []
    for p in partitions:
        if spans and p == spans[-1][1] + 1:
            spans[-1][1] = p
        else:
            spans.append([p, p])
    return clip(", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in spans), 120)


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _rows(rows: list[ResetRow]) -> str:
    out = []
    for r in rows:
        if r.before is None:
            change = "first position"
        elif r.after >= r.before:
            change = f"skips {r.after - r.before:,}" if r.after > r.before else "unchanged"
        else:
            change = f"re-reads {r.before - r.after:,}"
        out.append([r.partition, r.before, r.after, change])
    return table(["partition", "before", "after", "change"], out)
