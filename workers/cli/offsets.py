"""``workers offsets show``; ``workers offsets reset`` is in ``workers.cli.reset``."""

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
from workers.ops.fmt import age, brake_text, table
from workers.ops.status import PipelineStatus, statuses

offsets = command_group("offsets", "Stored read positions per partition: show and reset.")


@offsets.command("show")
@click.argument("pipeline", required=False)
@json_option("the partitions of each pipeline")
@click.option("--no-ages", is_flag=True, help="Skip reading the oldest unread record's time.")
@pass_state
def show(state: State, pipeline: str | None, as_json: bool, no_ages: bool) -> None:
    """Per partition of PIPELINE (default: every pipeline): committed offset (and Kafka's
    copy of it, under the pipeline's group), log start and end, lag (records, and age of the
    oldest record not finished), batches in flight
    (batches/records, overdue), lease holder and expiry. Exit code 1 when a pipeline could
    not be read (a named one: nothing else is printed)."""
    ops = state.ops()
    names = [pipeline] if pipeline else sorted(ops.settings.pipelines)
    found = statuses(ops, names, ages=not no_ages, kafka=True)
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
        lines.append([s.partition, s.stored, s.kafka, s.log_start, s.log_end, s.lag, oldest,
                      flying, holder, expires, s.skipped])  # fmt: skip
    headers = ["partition", "committed", "in kafka", "log start", "log end", "lag", "oldest",
               "in flight", "holder", "expires", "skipped"]  # fmt: skip
    note = "" if row.started else f"\nnothing stored yet: the first pull starts at {p.start}"
    if row.kafka_copy != "on":  # off, or why it could not be read
        note += f"\nKafka's copy of the offsets (group {p.group}): {row.kafka_copy}"
    if row.brake is not None:
        head += f"\nSTOPPED BY THE DEAD-LETTER BRAKE: {brake_text(row)}"
    return head + "\n" + table(headers, lines) + note


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"
