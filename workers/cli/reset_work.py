"""What ``workers offsets reset`` works on, topic by topic: the topics to reset (a pipeline's
one topic, or those of a pipeline over many now, or ``--topic``'s), the target of each, their
reset plans, and the before/after tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import arrow
import click

from workers.config import PipelineConfig
from workers.config.masking import clip
from workers.ops.context import Ops, OpsError
from workers.ops.fmt import table
from workers.ops.pipeline_topics import every_topic, one_topic
from workers.ops.resetplan import parse_plans
from workers.ops.resets import OPTIONS, Method, Plan, Target, plan_reset, to_target
from workers.ops.timespec import before_now, parse_datetime, parse_duration
from workers.pulling.positions import ResetRow


@dataclass(frozen=True, slots=True)
class Work:
    """One topic to reset: the pipeline narrowed to it, its target, its chosen partitions."""

    config: PipelineConfig
    target: Target
    partitions: list[int]


def topics_to_reset(ops: Ops, config: PipelineConfig, topic: str | None) -> list[PipelineConfig]:
    """The topics to reset, each the pipeline narrowed to it: --topic's, or every topic the
    pipeline reads now; ``OpsError`` when --topic is not one of them, or there is none."""
    if topic is not None:
        return [one_topic(ops, config, topic)]
    found = every_topic(ops, config)
    if not found:
        raise OpsError(f"pipeline {config.name!r} reads no topic now ({config.source} on "
                       f"cluster {config.cluster!r}): nothing to reset")  # fmt: skip
    return found


def targets(method: Method, text: str, now: arrow.Arrow, plan_text: str,
             config: PipelineConfig, known: dict[str, list[int]]) -> dict[str, Target]:  # fmt: skip
    """The target of each topic: one for all, but a plan's offsets, and only the topics a
    plan names."""
    if method != "from_file":
        one = _target(method, text, now)
        return dict.fromkeys(known, one)
    where = "stdin" if text == "-" else clip(text, 100)
    source = config.source if config.multi else ""
    try:
        plan = parse_plans(plan_text, where, known, config.group, source)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=OPTIONS[method]) from None
    return {t: Target(method, text, offsets=offsets) for t, offsets in plan.items()}


def held_partitions(ops: Ops, w: Work, preview: Plan) -> set[int]:
    """The partitions of the preview a pull holds a lease on."""
    parts = [r.partition for r in preview.rows]
    return set(ops.leases(w.config).holders(ops.space(w.config), parts))


def topic_names(topics: list[str]) -> str:
    return f"topic {topics[0]}" if len(topics) == 1 else "topics " + clip(", ".join(topics), 200)


def _target(method: Method, text: str, now: arrow.Arrow) -> Target:
    """The target of ``method`` but a plan (``targets``); the times fixed at ``now``. Values
    were checked by their option types."""
    try:
        if method == "to":
            return to_target(text, now)
        if method == "shift_by":
            return Target(method, text, shift=int(text))
        if method == "to_datetime":
            return Target(method, text, when=parse_datetime(text))
        return Target(method, text, when=before_now(parse_duration(text), text, now))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=OPTIONS[method]) from None


def plan_work(ops: Ops, w: Work) -> Plan:
    consumer = ops.connections.consumer(w.config.cluster)
    try:
        return plan_reset(ops.store(), consumer, ops.space(w.config), w.target, w.partitions)
    except ValueError as exc:  # a --to offset beyond what is kept
        raise click.BadParameter(str(exc), param_hint=OPTIONS[w.target.method]) from None


def spans(partitions: list[int]) -> str:
    """``0-5, 8``: partition numbers as ranges, so a topic with many stays one short line."""
    spans: list[list[int]] = []
    for p in partitions:
        if spans and p == spans[-1][1] + 1:
            spans[-1][1] = p
        else:
            spans.append([p, p])
    return clip(", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in spans), 120)


def reset_table(work: list[Work], plans: list[Plan], many: bool,
           rows: list[list[ResetRow]] | None = None) -> str:  # fmt: skip
    """Before/after per partition (``rows``, default the plans'), a topic column first for
    a pipeline over many topics."""
    if not many:
        [plan] = plans
        return _rows(rows[0] if rows else plan.rows, plan)
    out = []
    for i, (w, plan) in enumerate(zip(work, plans, strict=True)):
        for line in _changes(rows[i] if rows else plan.rows, plan):
            out.append([w.config.topic, *line])
    return table(["topic", "partition", "before", "after", "change"], out)


def _rows(rows: list[ResetRow], plan: Plan) -> str:
    return table(["partition", "before", "after", "change"], _changes(rows, plan))


def _changes(rows: list[ResetRow], plan: Plan) -> list[list[Any]]:
    out: list[list[Any]] = []
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
    return out
