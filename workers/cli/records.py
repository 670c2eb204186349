"""``workers produce`` and ``workers dlq show|replay|resume``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import arrow
import click

from workers.cli import documents
from workers.cli.base import (
    EXIT_FAILED,
    State,
    command_group,
    echo_json,
    json_option,
    main,
    pass_state,
)
from workers.cli.params import INT32_MAX, Number, TopicName
from workers.config.masking import shown
from workers.ops.brake import resume_brake, tripped_brakes
from workers.ops.dlq import Letter, read_letters, reason_counts, replay, replay_positions
from workers.ops.fmt import table
from workers.ops.produce import RECORDS_LISTED, default_cluster, lines_of, produce_lines
from workers.state.brake import Limits

SHOW_INVALID = 10
# Reasons counted one by one in `dlq show`'s table (the rest summed up in one line; --json
# lists them all).
SHOW_REASONS = 20


@main.command()
@click.argument("topic", type=TopicName())
@click.option("--cluster", help="Cluster name (default: the pipeline's that reads TOPIC).")
@click.option("--file", "path", default="-", show_default=True,
              help="JSON lines, one record each; - reads stdin.")  # fmt: skip
@click.option(
    "--key",
    "key_field",
    metavar="FIELD",
    help="Use this field of each JSON object as the record key (dots for nesting).",
)
@click.option(
    "--raw", is_flag=True, help="Send lines that are not JSON too (to test dead letters)."
)
@json_option(f"what was sent, with partition and offset (the first {RECORDS_LISTED:,} records)")
@pass_state
def produce(state: State, topic: str, cluster: str | None, path: str, key_field: str | None,
            raw: bool, as_json: bool) -> None:  # fmt: skip
    """Send records from a JSON-lines file (or stdin) to TOPIC, each confirmed by the broker.
    Lines that are not JSON are reported with their line number (on stderr) and not sent; exit
    code 1 then, or when a send failed."""
    ops = state.ops()
    cluster = ops.cluster(cluster) if cluster else default_cluster(ops.settings, topic)
    with _opened(path) as (stream, size):
        if size and sys.stderr.isatty():
            with click.progressbar(length=size, label=f"{cluster}/{topic}", file=sys.stderr,
                                   show_eta=True) as bar:  # fmt: skip
                result = produce_lines(ops, topic, cluster, stream, key_field, raw, bar.update)
        else:
            result = produce_lines(ops, topic, cluster, stream, key_field, raw)
    if as_json:
        echo_json(documents.produce(cluster, topic, result))
    else:
        click.echo(f"sent {result.sent:,} record(s) to {cluster}/{topic}")
    if result.without_key:
        click.echo(f"{result.without_key:,} record(s) had no {shown(key_field)} and were sent "
                   "without a key", err=True)  # fmt: skip
    for number, reason in result.invalid[:SHOW_INVALID]:
        click.echo(f"line {number}: {reason}", err=True)
    if len(result.invalid) > SHOW_INVALID:
        click.echo(f"... and {len(result.invalid) - SHOW_INVALID} more invalid lines", err=True)
    if result.failed:
        click.echo(f"{result.failed:,} send(s) failed: {result.first_failure}", err=True)
    if not result.ok:
        raise SystemExit(EXIT_FAILED)


@contextmanager
def _opened(path: str) -> Iterator[tuple[Iterator[bytes], int | None]]:
    """The lines of ``path`` (``-``: stdin) and its size (None: unknown)."""
    if path == "-":
        yield lines_of(sys.stdin.buffer), None
        return
    try:
        file = open(path, "rb")  # noqa: SIM115 - closed below
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        message = f"cannot open {shown(path)}: {reason}"
        raise click.BadParameter(message, param_hint="--file") from None
    with file:
        yield lines_of(file), os.fstat(file.fileno()).st_size


dlq = command_group("dlq", "Dead letters: records a pipeline refused, with the reason.")


@dlq.command("show")
@click.argument("pipeline")
@click.option("--limit", type=Number(int, 1, INT32_MAX), default=20, show_default=True,
              help="Show the last N letters (counts cover all).")  # fmt: skip
@json_option("the counts and the last letters")
@pass_state
def dlq_show(state: State, pipeline: str, limit: int, as_json: bool) -> None:
    """Count the dead letters of PIPELINE by reason and show the last ones; letters already
    replayed are marked."""
    ops = state.ops()
    config = ops.pipeline(pipeline)
    letters = read_letters(ops, config)
    done = replay_positions(ops, config)
    replayed = [x.offset < done.get(x.partition, 0) for x in letters]
    if as_json:
        echo_json(documents.dlq_show(config, letters, replayed, limit))
        return
    click.echo(f"{config.cluster}/{config.dead_letter_topic}: {len(letters):,} dead letter(s), "
               f"{replayed.count(False):,} not replayed")  # fmt: skip
    if not letters:
        return
    reasons = reason_counts(letters)
    click.echo(table(["count", "reason"], [[n, r] for r, n in reasons[:SHOW_REASONS]]))
    rest = reasons[SHOW_REASONS:]
    if rest:
        click.echo(f"... and {len(rest):,} other reason(s) of {sum(n for _, n in rest):,} "
                   "letter(s) (--json lists every reason)")  # fmt: skip
    click.echo(f"\nlast {min(limit, len(letters))}:")
    shown = [_row(x, r) for x, r in zip(letters, replayed, strict=True)][-limit:]
    click.echo(table(["letter", "time (UTC)", "source", "reason", "value", "replayed"], shown))


def _row(x: Letter, replayed: bool) -> list[Any]:
    when = arrow.get(x.timestamp / 1000).format("YYYY-MM-DD HH:mm:ss") if x.timestamp >= 0 else "-"
    if x.dropped is not None:
        value = f"(dropped: {x.dropped:,} bytes)"
    else:
        text = (x.value or b"").decode("utf-8", "replace")
        value = text if len(text) <= 60 else text[:57] + "..."
    return [f"{x.partition}/{x.offset}", when, x.source, x.reason[:70], value, replayed]


@dlq.command("replay")
@click.argument("pipeline")
@click.option("--limit", type=Number(int, 1, INT32_MAX), help="Replay at most N letters.")
@click.option("--dry-run", is_flag=True,
              help="List the letters it would replay (and their count); send nothing.")  # fmt: skip
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option("the letters replayed and the replay positions")
@pass_state
def dlq_replay(state: State, pipeline: str, limit: int | None, dry_run: bool, yes: bool,
               as_json: bool) -> None:  # fmt: skip
    """Send the letters not yet replayed back to PIPELINE's topic (original key, value and
    headers, plus workers.replayed_from) after fixing their cause. A letter that fails again
    comes back as a new dead letter. --dry-run lists each letter it would send: where it is
    on the dead-letter topic (partition/offset), its source record, the reason. With --json
    the preview and the question go to stderr."""
    ops = state.ops()
    config = ops.pipeline(pipeline)
    preview = replay(ops, config, limit, dry_run=True)
    n = len(preview.letters)
    if config.multi:
        where = f"the topics they came from ({config.cluster}/{config.source})"
    else:
        where = f"{config.cluster}/{config.topic}"
    click.echo(f"{n:,} letter(s) to replay to {where}", err=as_json)
    if dry_run and n:
        rows = [[f"{x.partition}/{x.offset}", x.source, x.reason] for x in preview.letters]
        click.echo(table(["letter", "source", "reason"], rows), err=as_json)
    dropped = len(preview.unreplayable) - len(preview.elsewhere)
    if dropped:
        click.echo(
            f"{dropped:,} letter(s) cannot be replayed: their value "
            "was too large to keep (the source offset is in each letter)",
            err=True,
        )
    if preview.elsewhere:
        names = sorted({shown(x.topic, 80) if x.topic else "none named"
                        for x in preview.elsewhere})  # fmt: skip
        more = f" and {len(names) - 5:,} more" if len(names) > 5 else ""
        click.echo(
            f"{len(preview.elsewhere):,} letter(s) cannot be replayed: the topic they came "
            f"from is not one of the pipeline's topics now ({', '.join(names[:5])}{more}); "
            "they are skipped",
            err=True,
        )
    if dry_run or not (n or preview.unreplayable):
        if as_json:
            echo_json(documents.dlq_replay(config, preview, dry_run))
        return
    if not yes:
        click.confirm(f"Replay {n:,} letter(s)?", abort=True, err=as_json)
    done = replay(ops, config, limit, dry_run=False)
    summary = f"replayed {len(done.letters):,} letter(s); skipped {len(done.unreplayable):,}"
    click.echo(summary, err=as_json)
    if as_json:
        echo_json(documents.dlq_replay(config, done, False))


@dlq.command("resume")
@click.argument("pipeline")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option("whether the brake was tripped and the trip it cleared")
@pass_state
def dlq_resume(state: State, pipeline: str, yes: bool, as_json: bool) -> None:
    """Resume PIPELINE after its dead-letter brake tripped, once the cause is fixed: clear the
    trip and the brake's counts. Its pulls go on at their next run and hand off again the
    batches the brake held. A brake that is not tripped is left alone (exit code 0). With
    --json the summary and the question go to stderr."""
    ops = state.ops()
    config = ops.pipeline(pipeline)
    trips = tripped_brakes(ops, config)
    if not trips:
        click.echo(f"the dead-letter brake of {config.name} is not tripped; nothing to resume",
                   err=as_json)  # fmt: skip
        if as_json:
            echo_json(documents.dlq_resume(config, None))
        return
    for topic, trip in trips:
        when = arrow.get(trip.tripped_ms / 1000).format("YYYY-MM-DD HH:mm:ss")
        of = f", topic {topic.topic}," if config.multi else ""
        click.echo(f"pipeline {config.name}{of}: the dead-letter brake tripped at {when} UTC: "
                   f"{trip.describe(Limits.of(config))}", err=as_json)  # fmt: skip
    if not yes:
        click.confirm(f"Resume pipeline {config.name}?", abort=True, err=as_json)
    cleared = [c for c in (resume_brake(ops, topic) for topic, _ in trips) if c is not None]
    click.echo(f"resumed {config.name}: its pulls go on at their next run", err=as_json)
    if as_json:
        earliest = min(cleared, key=lambda c: c.tripped_ms) if cleared else None
        echo_json(documents.dlq_resume(config, earliest))
