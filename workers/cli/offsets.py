"""``workers offsets show``; ``workers offsets reset`` is in ``workers.cli.reset``."""

from __future__ import annotations

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
    pass_state,
)
from workers.config.masking import clip
from workers.ops.fmt import age, brake_text, table
from workers.ops.overview import ManyStatus, Status, statuses
from workers.ops.status import PartitionStatus

offsets = command_group("offsets", "Stored read positions per partition: show and reset.")


@offsets.command("show")
@click.argument("pipeline", required=False)
@json_option("the partitions of each pipeline")
@click.option("--no-ages", is_flag=True, help="Skip reading the oldest unread record's time.")
@click.option("--topic", metavar="NAME",
              help="Only this topic of PIPELINE (one of the topics a pipeline over many "
                   "topics reads now).")  # fmt: skip
@pass_state
def show(state: State, pipeline: str | None, as_json: bool, no_ages: bool,
         topic: str | None) -> None:  # fmt: skip
    """Per partition of PIPELINE (default: every pipeline): committed offset (and Kafka's
    copy of it, under the pipeline's group), log start and end, lag (records, and age of the
    oldest record not finished), batches in flight
    (batches/records, overdue), lease holder and expiry; for a pipeline over many topics,
    per topic and partition. Exit code 1 when a pipeline could
    not be read (a named one: nothing else is printed)."""
    if topic is not None and not pipeline:
        raise click.UsageError("--topic needs PIPELINE")
    ops = state.ops()
    names = [pipeline] if pipeline else sorted(ops.settings.pipelines)
    found = statuses(ops, names, ages=not no_ages, kafka=True, topic=topic)
    if pipeline and isinstance(found[0], Exception):
        raise found[0]
    rows: list[tuple[str, Status | str]] = [
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


def _render(row: Status | str) -> str:
    if isinstance(row, str):
        return f"error: {row}"
    if isinstance(row, ManyStatus):
        return _render_many(row)
    p = row.pipeline
    head = (f"pipeline {p.name}: {p.cluster}/{p.topic}, group {p.group}, {p.mode}; "
            f"lag {_n(row.lag)}, oldest unread {age(row.oldest_age)}")  # fmt: skip
    lines = [_cells(s, row.now_ms) for s in row.partitions]
    note = "" if row.started else f"\nnothing stored yet: the first pull starts at {p.start}"
    if row.kafka_copy != "on":  # off, or why it could not be read
        note += f"\nKafka's copy of the offsets (group {p.group}): {row.kafka_copy}"
    if row.brake is not None:
        head += f"\nSTOPPED BY THE DEAD-LETTER BRAKE: {brake_text(row)}"
    return head + "\n" + table(HEADERS, lines) + note


HEADERS = ["partition", "committed", "in kafka", "log start", "log end", "lag", "oldest",
           "in flight", "holder", "expires", "skipped"]  # fmt: skip


def _cells(s: PartitionStatus, now_ms: int) -> list[Any]:
    """One partition's row of the table (``HEADERS``)."""
    h = s.holder
    holder = f"{h.host}:{h.pid} {h.task}".strip() if h else None
    expires = f"{h.expires_in:.0f}s" if h else None
    oldest = age((now_ms - s.oldest_ms) / 1000) if s.oldest_ms is not None else None
    f = s.flight
    flying = f"{f.batches}/{f.records}" + (f" ({f.overdue} overdue)" if f.overdue else "")
    return [s.partition, s.stored, s.kafka, s.log_start, s.log_end, s.lag, oldest, flying,
            holder, expires, s.skipped]  # fmt: skip


def _render_many(row: ManyStatus) -> str:
    """A pipeline over many topics: its totals, then one table of every topic's partitions
    (topic first); notes per topic where they differ."""
    p = row.pipeline
    head = (f"pipeline {p.name}: {p.cluster}/{p.source}, group {p.group}, {p.mode}; "
            f"{_count(len(row.topics), 'topic')}; lag {_n(row.lag)}, "
            f"oldest unread {age(row.oldest_age)}")  # fmt: skip
    for t in row.tripped:
        head += f"\nSTOPPED BY THE DEAD-LETTER BRAKE, topic {t.pipeline.topic}: {brake_text(t)}"
    notes = []
    if row.missing:
        notes.append(f"listed topics not on the cluster (read once created): "
                     f"{clip(', '.join(row.missing), 300)}")  # fmt: skip
    if not row.topics:
        what = "no listed topic exists" if p.topics else f"no topic matches {p.topic_pattern!r}"
        return "\n".join([head, f"{what} on cluster {p.cluster} now", *notes])
    waiting: dict[str, list[str]] = {}
    copies: dict[str, list[str]] = {}
    for t in row.topics:
        if not t.started:
            waiting.setdefault(str(t.pipeline.start), []).append(t.pipeline.topic)
        if t.kafka_copy != "on":
            copies.setdefault(t.kafka_copy, []).append(t.pipeline.topic)
    for start, names in waiting.items():
        notes.append(f"nothing stored yet in {_names(names)}: the first pull starts at {start}")
    for copy, names in copies.items():
        notes.append(f"Kafka's copy of the offsets (group {p.group}) of {_names(names)}: {copy}")
    lines = [[t.pipeline.topic, *_cells(s, row.now_ms)] for t in row.topics for s in t.partitions]
    return "\n".join([head, table(["topic", *HEADERS], lines), *notes])


def _names(topics: list[str]) -> str:
    """``topic a`` or ``topics a, b`` (capped)."""
    return f"topic {topics[0]}" if len(topics) == 1 else "topics " + clip(", ".join(topics), 300)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"
