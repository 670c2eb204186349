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
from workers.cli.reset_work import (
    Work,
    held_partitions,
    plan_work,
    reset_table,
    spans,
    targets,
    topic_names,
    topics_to_reset,
)
from workers.config import PipelineConfig
from workers.config.masking import clip
from workers.ops.resetplan import PlanError, export_plan, read_plan_text
from workers.ops.resets import OPTIONS, Method, Plan, Target, apply_reset
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
              help="Reset only this partition (repeatable). Default: all. A pipeline over "
                   "many topics needs --topic with it.")  # fmt: skip
@click.option("--topic", metavar="NAME",
              help="Reset only this topic of a pipeline over many topics (one it reads now). "
                   "Default: every topic it reads now.")  # fmt: skip
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
          partitions: tuple[int, ...], topic: str | None, dry_run: bool, yes: bool,
          export: bool, as_json: bool) -> None:  # fmt: skip
    """Move PIPELINE's stored offsets to one target (see the options). A pull that read before
    the reset cannot write over it; running consumers continue from the new offsets at their
    next cycle. With --json or --export the preview and the question go to stderr."""
    options: list[tuple[Method, object]] = [
        ("to", to), ("shift_by", shift_by), ("to_datetime", to_datetime),
        ("by_duration", by_duration), ("from_file", plan_path),
    ]  # fmt: skip
    given = {method: str(value) for method, value in options if value is not None}
    _check_options(given, partitions, dry_run, yes, export, as_json)
    if topic is not None and "from_file" in given:
        raise click.UsageError(
            "--from-file and --topic cannot be used together (the plan names its topics)"
        )
    [(method, text)] = given.items()
    now = arrow.utcnow()  # one time for the preview and the reset
    plan_text = _read_plan(text) if method == "from_file" else ""
    ops = state.ops()
    config = ops.pipeline(pipeline)
    if config.multi and partitions and topic is None:
        raise click.UsageError(
            f"--partition needs --topic: pipeline {pipeline} reads {config.source}"
        )
    chosen_topics = topics_to_reset(ops, config, topic)
    known = {c.topic: ops.partitions(c.cluster, c.topic) for c in chosen_topics}
    if partitions:  # one topic: the pipeline's, or --topic's
        [(name, parts)] = known.items()
        unknown = sorted(set(partitions) - set(parts))
        if unknown:
            raise click.BadParameter(
                f"no partition {clip(', '.join(map(str, unknown)), 80)} in {name!r} "
                f"(it has {spans(parts)})",
                param_hint="--partition",
            )
    aims = targets(method, text, now, plan_text, config, known)
    work = [Work(c, aims[c.topic], sorted(set(partitions)) or known[c.topic])
            for c in chosen_topics if c.topic in aims]  # fmt: skip
    target = work[0].target  # the same for every topic, but a plan's offsets
    previews = [plan_work(ops, w) for w in work]
    quiet = as_json or export
    many = config.multi

    def say(line: str) -> None:  # with --json or --export, stdout holds the document only
        click.echo(line, err=quiet)

    where = config.source if many else config.topic
    count = f"; {len(work):,} topic(s)" if many else ""
    say(f"pipeline {pipeline}: {config.cluster}/{where}, group {config.group}{count}")
    say(reset_table(work, previews, many))
    for w, preview in zip(work, previews, strict=True):
        outside = preview.outside()
        if outside:
            bounds = ", ".join(f"{p}: {preview.bounds[p][0]}..{preview.bounds[p][1]}"
                               for p in outside)  # fmt: skip
            of = f" of {w.config.topic}" if many else ""
            policy = config.out_of_range
            say(f"partitions {outside}{of}: the new offset is outside the log ({bounds}); "
                f"the pipeline's out_of_range policy ({policy}) will move it")  # fmt: skip
    helds = [held_partitions(ops, w, preview) for w, preview in zip(work, previews, strict=True)]
    rows = sum(len(p.rows) for p in previews)
    if dry_run:
        say("dry run: nothing changed")
        _emit(config, target, True, work, previews, [p.rows for p in previews], helds, export,
              as_json)  # fmt: skip
        return
    held = sum(len(h) for h in helds)
    if held:
        say(f"{held} of these partitions are being read now; the reset wins "
            "(their holders' next commit is refused and they read from here)")  # fmt: skip
    if not yes:
        of = f" of {len(work):,} topic(s)" if many else ""
        click.confirm(f"Reset {rows} partition(s){of} {target.phrase()}?", abort=True,
                      err=quiet)  # fmt: skip
    plans, done = [], []
    for w in work:
        plans.append(plan_work(ops, w))
        done.append(apply_reset(ops.store(), ops.space(w.config), plans[-1], w.target))
    moved = [i for i, (a, b) in enumerate(zip(plans, previews, strict=True))
             if a.offsets != b.offsets]  # fmt: skip
    if moved:
        say("the targets moved while you confirmed (new records or commits); stored:")
        say(reset_table([work[i] for i in moved], [plans[i] for i in moved], many,
                   [done[i] for i in moved]))  # fmt: skip
    copied: dict[str, list[str]] = {}
    for w, rows_done in zip(work, done, strict=True):
        offsets = {r.partition: r.after for r in rows_done}
        line = copy_reset(ops.connections, w.config, ops.space(w.config), offsets)
        copied.setdefault(line, []).append(w.config.topic)
    for line, names in copied.items():
        say(line if not many or len(copied) == 1 else f"{topic_names(names)}: {line}")
    say(f"reset {sum(len(d) for d in done)} partition(s)" + (f" of {len(work):,} topic(s)"
                                                            if many else ""))  # fmt: skip
    _emit(config, target, False, work, plans, done, helds, export, as_json)


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


def _emit(config: PipelineConfig, target: Target, dry_run: bool, work: list[Work],
          plans: list[Plan], rows: list[list[ResetRow]], helds: list[set[int]], export: bool,
          as_json: bool) -> None:  # fmt: skip
    """The document of --json, or the CSV of --export, on stdout: per topic, ``rows`` what
    was stored (or would be), ``plans`` the log edges and the clamped partitions."""
    if as_json and not config.multi:
        [plan], [done], [held] = plans, rows, helds
        echo_json(documents.offsets_reset(config, target, dry_run, done, plan.bounds, held,
                                          plan.clamped))  # fmt: skip
    elif as_json:
        sections = [documents.TopicReset(w.config.topic, r, p.bounds, h, p.clamped)
                    for w, p, r, h in zip(work, plans, rows, helds, strict=True)]  # fmt: skip
        echo_json(documents.offsets_reset_many(config, target, dry_run, sections))
    elif export:
        text = "".join(export_plan(w.config.topic, [(r.partition, r.after) for r in done])
                       for w, done in zip(work, rows, strict=True))  # fmt: skip
        click.echo(text, nl=False)
