"""``workers offsets reset``: move a pipeline's stored offsets by the targets of
kafka-consumer-groups (``--to``, ``--shift-by``, ``--to-datetime``, ``--by-duration``,
``--from-file``), after a preview and a question; ``--dry-run``, ``--json``, ``--export``."""

from __future__ import annotations

import sys

import arrow
import click

from workers.cli import documents
from workers.cli.base import State, echo_json, json_option, pass_state
from workers.cli.offsets import offsets
from workers.cli.params import INT32_MAX, DateTime, Duration, Number, ResetTarget
from workers.config import PipelineConfig
from workers.config.masking import clip
from workers.ops.context import Ops
from workers.ops.fmt import table
from workers.ops.resetplan import PlanError, export_plan, parse_plan, read_plan_text
from workers.ops.resets import OPTIONS, Method, Plan, Target, apply_reset, plan_reset, to_target
from workers.ops.timespec import before_now, parse_datetime, parse_duration
from workers.pulling.kafka_copy import copy_reset
from workers.pulling.positions import ResetRow
from workers.state.offsets import MAX_OFFSET

TARGETS = ", ".join(OPTIONS.values())


@offsets.command("reset")
@click.argument("pipeline")
@click.option("--to", "to", type=ResetTarget(), metavar="earliest|latest|OFFSET|TIME",
              help="Where to: the log start or end, an offset, or the first record at or after "
                   "a time: ISO 8601 (2026-11-24T10:00+08:00), relative (-1h, -30m) or "
                   "@epoch seconds/milliseconds.")  # fmt: skip
@click.option("--shift-by", type=Number(int, -MAX_OFFSET, MAX_OFFSET), metavar="N",
              help="Move each partition N records from its committed offset (negative: back), "
                   "stopping at the log's start or end.")  # fmt: skip
@click.option("--to-datetime", type=DateTime(), metavar="YYYY-MM-DDTHH:mm:SS.sss",
              help="The first record at or after this time; a zone (Z, +08:00) is optional, "
                   "none means UTC, as in kafka-consumer-groups.")  # fmt: skip
@click.option("--by-duration", type=Duration(), metavar="DURATION",
              help="The first record at or after this long before now: ISO 8601 (PT1H, "
                   "P1DT2H30M) or short (1h, 30m, 1h30m).")  # fmt: skip
@click.option("--from-file", "plan_path", metavar="PATH",
              help="Apply a saved plan: CSV lines topic,partition,offset as --export and "
                   "kafka-consumer-groups write them (- reads stdin). Every line is checked "
                   "first: a bad one applies nothing.")  # fmt: skip
@click.option("--partition", "partitions", type=Number(int, 0, INT32_MAX), multiple=True,
              help="Reset only this partition (repeatable). Default: all.")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Show before/after and change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--export", is_flag=True,
              help="Print the plan (after a reset: what was stored) on stdout as CSV "
                   "topic,partition,offset, for --from-file; other output goes to "
                   "stderr.")  # fmt: skip
@json_option("before/after per partition")
@pass_state
def reset(state: State, pipeline: str, to: str | None, shift_by: int | None,
          to_datetime: str | None, by_duration: str | None, plan_path: str | None,
          partitions: tuple[int, ...], dry_run: bool, yes: bool, export: bool,
          as_json: bool) -> None:  # fmt: skip
    """Move PIPELINE's stored offsets to one target (see the options). A pull that read before
    the reset cannot write over it; running consumers continue from the new offsets at their
    next cycle. With --json or --export the preview and the question go to stderr."""
    options: list[tuple[Method, object]] = [
        ("to", to), ("shift_by", shift_by), ("to_datetime", to_datetime),
        ("by_duration", by_duration), ("from_file", plan_path),
    ]  # fmt: skip
    given = {method: str(value) for method, value in options if value is not None}
    _check_options(given, partitions, dry_run, yes, export, as_json)
    [(method, text)] = given.items()
    now = arrow.utcnow()  # one time for the preview and the reset
    plan_text = _read_plan(text) if method == "from_file" else ""
    ops = state.ops()
    config = ops.pipeline(pipeline)
    known = ops.partitions(config.cluster, config.topic)
    unknown = sorted(set(partitions) - set(known))
    if unknown:
        raise click.BadParameter(
            f"no partition {clip(', '.join(map(str, unknown)), 80)} in {config.topic!r} "
            f"(it has {_spans(known)})",
            param_hint="--partition",
        )
    target = _target(method, text, now, plan_text, config.topic, config.group, known)
    chosen = sorted(set(partitions)) or known
    preview = _plan(ops, pipeline, target, chosen)
    quiet = as_json or export

    def say(line: str) -> None:  # with --json or --export, stdout holds the document only
        click.echo(line, err=quiet)

    say(f"pipeline {pipeline}: {config.cluster}/{config.topic}, group {config.group}")
    say(_rows(preview.rows, preview))
    outside = preview.outside()
    if outside:
        where = ", ".join(f"{p}: {preview.bounds[p][0]}..{preview.bounds[p][1]}" for p in outside)
        say(f"partitions {outside}: the new offset is outside the log ({where}); "
            f"the pipeline's out_of_range policy ({config.out_of_range}) will move it")  # fmt: skip
    space = ops.space(config)
    held = set(ops.leases(config).holders(space, [r.partition for r in preview.rows]))
    if dry_run:
        say("dry run: nothing changed")
        _emit(config, target, True, preview.rows, preview, held, export, as_json)
        return
    if held:
        say(f"{len(held)} of these partitions are being read now; the reset wins "
            "(their holders' next commit is refused and they read from here)")  # fmt: skip
    if not yes:
        click.confirm(f"Reset {len(preview.rows)} partition(s) {target.phrase()}?", abort=True,
                      err=quiet)  # fmt: skip
    plan = _plan(ops, pipeline, target, chosen)
    done = apply_reset(ops.store(), space, plan, target)
    if plan.offsets != preview.offsets:
        say("the targets moved while you confirmed (new records or commits); stored:")
        say(_rows(done, plan))
    say(copy_reset(ops.connections, config, space, {r.partition: r.after for r in done}))
    say(f"reset {len(done)} partition(s)")
    _emit(config, target, False, done, plan, held, export, as_json)


def _check_options(given: dict[Method, str], partitions: tuple[int, ...], dry_run: bool,
                   yes: bool, export: bool, as_json: bool) -> None:  # fmt: skip
    """Options that cannot go together: a usage error (exit code 2) before anything connects."""
    if not given:
        raise click.UsageError(f"give a target: one of {TARGETS}")
    if len(given) > 1:
        names = " and ".join(OPTIONS[m] for m in given)
        raise click.UsageError(f"{names} cannot be used together; give one target")
    if export and as_json:
        raise click.UsageError("--export and --json cannot be used together (both print on stdout)")
    if "from_file" in given and partitions:
        raise click.UsageError(
            "--from-file and --partition cannot be used together (the plan names its partitions)"
        )
    if given.get("from_file") == "-" and not (yes or dry_run):
        raise click.UsageError(
            "--from-file - reads the plan from stdin, where the question would be answered: "
            "add --yes or --dry-run"
        )


def _read_plan(path: str) -> str:
    """The text of the plan at ``path`` (``-``: stdin); a usage error when it cannot be read."""
    try:
        if path == "-":
            return read_plan_text(sys.stdin.buffer, "stdin")
        with open(path, "rb") as stream:
            return read_plan_text(stream, clip(path, 100))
    except PlanError as exc:
        raise click.BadParameter(str(exc), param_hint="--from-file") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise click.BadParameter(
            f"cannot read {clip(path, 100)!r}: {reason}", param_hint="--from-file"
        ) from None


def _target(method: Method, text: str, now: arrow.Arrow, plan_text: str, topic: str,
            group: str, known: list[int]) -> Target:  # fmt: skip
    """The target of ``method``; the times fixed at ``now``. Values were checked by their
    option types; a plan's lines are checked here, against the topic's partitions."""
    try:
        if method == "to":
            return to_target(text, now)
        if method == "shift_by":
            return Target(method, text, shift=int(text))
        if method == "to_datetime":
            return Target(method, text, when=parse_datetime(text))
        if method == "by_duration":
            return Target(method, text, when=before_now(parse_duration(text), text, now))
        where = "stdin" if text == "-" else clip(text, 100)
        return Target(method, text, offsets=parse_plan(plan_text, where, topic, group, known))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=OPTIONS[method]) from None


def _plan(ops: Ops, pipeline: str, target: Target, chosen: list[int]) -> Plan:
    config = ops.pipeline(pipeline)
    consumer = ops.connections.consumer(config.cluster)
    try:
        return plan_reset(ops.store(), consumer, ops.space(config), target, chosen)
    except ValueError as exc:  # a --to offset beyond what is kept
        raise click.BadParameter(str(exc), param_hint=OPTIONS[target.method]) from None


def _emit(config: PipelineConfig, target: Target, dry_run: bool, rows: list[ResetRow], plan: Plan,
          held: set[int], export: bool, as_json: bool) -> None:  # fmt: skip
    """The document of --json, or the CSV of --export, on stdout."""
    if as_json:
        echo_json(documents.offsets_reset(config, target, dry_run, rows, plan.bounds, held,
                                          plan.clamped))  # fmt: skip
    elif export:
        click.echo(export_plan(config.topic, [(r.partition, r.after) for r in rows]), nl=False)


def _spans(partitions: list[int]) -> str:
    """``0-5, 8``: partition numbers as ranges, so a topic with many stays one short line."""
    spans: list[list[int]] = []
    for p in partitions:
        if spans and p == spans[-1][1] + 1:
            spans[-1][1] = p
        else:
            spans.append([p, p])
    return clip(", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in spans), 120)


def _rows(rows: list[ResetRow], plan: Plan) -> str:
    out = []
    for r in rows:
        if r.before is None:
            change = "first position"
        elif r.after >= r.before:
            change = f"skips {r.after - r.before:,}" if r.after > r.before else "unchanged"
        else:
            change = f"re-reads {r.before - r.after:,}"
        if r.partition in plan.clamped:
            start, end = plan.bounds[r.partition]
            change += f" (stopped at the log {'start' if r.after == start else 'end'})"
        out.append([r.partition, r.before, r.after, change])
    return table(["partition", "before", "after", "change"], out)
