"""``workers offsets show`` and ``workers offsets reset``."""

from __future__ import annotations

import click

from workers.cli import documents
from workers.cli.base import (
    EXIT_FAILED,
    State,
    command_group,
    echo_json,
    error_text,
    json_option,
    pass_state,
)
from workers.cli.params import INT32_MAX, Number, ResetTarget
from workers.config.masking import clip
from workers.ops.fmt import age, brake_text, table
from workers.ops.status import PipelineStatus, statuses
from workers.pulling.positions import ResetRow, edges, reset_offsets

offsets = command_group("offsets", "Stored read positions per partition: show and reset.")


@offsets.command("show")
@click.argument("pipeline", required=False)
@json_option("the partitions of each pipeline")
@click.option("--no-ages", is_flag=True, help="Skip reading the oldest unread record's time.")
@pass_state
def show(state: State, pipeline: str | None, as_json: bool, no_ages: bool) -> None:
    """Per partition of PIPELINE (default: every pipeline): committed offset, log start and
    end, lag (records, and age of the oldest record not finished), batches in flight
    (batches/records, overdue), lease holder and expiry. Exit code 1 when a pipeline could
    not be read (a named one: nothing else is printed)."""
    ops = state.ops()
    names = [pipeline] if pipeline else sorted(ops.settings.pipelines)
    found = statuses(ops, names, ages=not no_ages)
    if pipeline and isinstance(found[0], Exception):
        raise found[0]
    rows: list[tuple[str, PipelineStatus | str]] = [
        (name, error_text(r) if isinstance(r, Exception) else r)
        for name, r in zip(names, found, strict=True)
    ]
    if as_json:
        echo_json(documents.offsets_show(rows))
        for _, r in rows:
            if isinstance(r, str):
                click.echo(f"error: {r}", err=True)
    else:
        click.echo("\n\n".join(_render(r) for _, r in rows))
    if any(isinstance(r, str) for _, r in rows):
        raise SystemExit(EXIT_FAILED)


def _render(row: PipelineStatus | str) -> str:
    if isinstance(row, str):
        return f"error: {row}"
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
    if row.brake is not None:
        head += f"\nSTOPPED BY THE DEAD-LETTER BRAKE: {brake_text(row)}"
    return head + "\n" + table(headers, lines) + note


@offsets.command("reset")
@click.argument("pipeline")
@click.option("--to", "target", required=True, type=ResetTarget(),
              metavar="earliest|latest|OFFSET|TIME",
              help="Where to: the log start or end, an offset, or the first record at or after "
                   "a time: ISO 8601 (2026-11-24T10:00+08:00), relative (-1h, -30m) or "
                   "@epoch seconds/milliseconds.")  # fmt: skip
@click.option("--partition", "partitions", type=Number(int, 0, INT32_MAX), multiple=True,
              help="Reset only this partition (repeatable). Default: all.")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Show before/after and change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option("before/after per partition")
@pass_state
def reset(state: State, pipeline: str, target: str, partitions: tuple[int, ...],
          dry_run: bool, yes: bool, as_json: bool) -> None:  # fmt: skip
    """Move PIPELINE's stored offsets. A pull that read before the reset cannot write over
    it; running consumers continue from the new offsets at their next cycle. With --json the
    preview and the question go to stderr."""
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

    def say(text: str) -> None:  # with --json, stdout holds the document only
        click.echo(text, err=as_json)

    say(f"pipeline {pipeline}: {config.cluster}/{config.topic}, group {config.group}")
    say(_rows(preview))
    bounds = edges(consumer, config.topic, [r.partition for r in preview])
    outside = [r.partition for r in preview
               if not bounds[r.partition][0] <= r.after <= bounds[r.partition][1]]  # fmt: skip
    if outside:
        where = ", ".join(f"{p}: {bounds[p][0]}..{bounds[p][1]}" for p in outside)
        policy = config.out_of_range
        say(f"partitions {outside}: the new offset is outside the log ({where}); "
            f"the pipeline's out_of_range policy ({policy}) will move it")  # fmt: skip
    held = set(ops.leases(config).holders(space, [r.partition for r in preview]))
    if dry_run:
        say("dry run: nothing changed")
        if as_json:
            echo_json(documents.offsets_reset(config, target, True, preview, bounds, held))
        return
    if held:
        say(f"{len(held)} of these partitions are being read now; the reset wins "
            "(their holders' next commit is refused and they read from here)")  # fmt: skip
    if not yes:
        click.confirm(f"Reset {len(preview)} partition(s) to {target}?", abort=True,
                      err=as_json)  # fmt: skip
    done = reset_offsets(ops.store(), consumer, space, target, chosen)
    if [r.after for r in done] != [r.after for r in preview]:
        say("the targets moved while you confirmed (new records); stored:")
        say(_rows(done))
    say(f"reset {len(done)} partition(s)")
    if as_json:
        echo_json(documents.offsets_reset(config, target, False, done, bounds, held))


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
