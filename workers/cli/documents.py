"""The JSON documents of ``--json``: one shape per command, whatever its arguments.

Each document is an object with a fixed set of top-level keys (``KEYS``), lists inside; ``ok``
is true exactly when the command exits with 0. The README (JSON output) says what each key
means. The builders take what ``workers.ops`` returned, so the tests read the same shapes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from workers.config import PipelineConfig
from workers.ops.check_topics import Finding
from workers.ops.dlq import Letter, Replay, reason_counts
from workers.ops.overview import ManyStatus, Status
from workers.ops.pace import Pace
from workers.ops.produce import Produced
from workers.ops.resets import Target
from workers.ops.status import PipelineStatus
from workers.ops.topics import Created
from workers.pulling.positions import ResetRow
from workers.state.brake import Trip

# The top-level keys of each command's document.
KEYS: dict[str, tuple[str, ...]] = {
    "check": ("ok", "findings"),
    "topics create": ("ok", "dry_run", "partitions", "replication_factor", "topics"),
    "offsets show": ("ok", "pipelines", "errors"),
    "offsets reset": ("ok", "pipeline", "cluster", "topic", "group", "method", "target",
                      "time_ms", "dry_run", "partitions"),
    "lag": ("ok", "time_ms", "pipelines", "errors"),
    "produce": ("ok", "cluster", "topic", "sent", "failed", "first_failure", "without_key",
                "invalid", "partitions", "records", "records_omitted"),
    "dlq show": ("ok", "pipeline", "cluster", "dead_letter_topic", "total", "pending",
                 "reasons", "letters"),
    "dlq replay": ("ok", "pipeline", "cluster", "topic", "dead_letter_topic", "dry_run",
                   "letters", "unreplayable", "positions"),
    "dlq resume": ("ok", "pipeline", "cluster", "topic", "group", "resumed", "brake"),
}  # fmt: skip

# A pipeline that could not be read, in the ``errors`` list of offsets show and lag.
ERROR_KEYS = ("pipeline", "error")


def _doc(command: str, **values: Any) -> dict[str, Any]:
    """The document of ``command``: exactly its keys, in their order."""
    if set(values) != set(KEYS[command]):
        raise AssertionError(f"{command}: keys {sorted(values)} are not {KEYS[command]}")
    return {key: values[key] for key in KEYS[command]}


def check(findings: Sequence[Finding]) -> dict[str, Any]:
    rows = [{"what": f.what, "level": f.level, "detail": f.detail, "hint": f.hint}
            for f in findings]  # fmt: skip
    return _doc("check", ok=not any(f.failed for f in findings), findings=rows)


def topics_create(
    results: Sequence[Created], partitions: int, replication_factor: int, dry_run: bool
) -> dict[str, Any]:
    rows = [
        {"cluster": r.cluster, "topic": r.topic, "status": r.status, "why": r.why,
         "error": r.detail if r.status == "failed" else None}
        for r in results
    ]  # fmt: skip
    return _doc("topics create", ok=not any(r.status == "failed" for r in results),
                dry_run=dry_run, partitions=partitions, replication_factor=replication_factor,
                topics=rows)  # fmt: skip


def _errors(rows: Sequence[tuple[str, Status | str]]) -> list[dict[str, Any]]:
    return [{"pipeline": name, "error": r} for name, r in rows if isinstance(r, str)]


def objects(status: Status) -> list[PipelineStatus]:
    """The objects of one pipeline in ``offsets show`` and ``lag``: its status, or one per
    topic of a pipeline over many (in topic order; each with ``topic`` set), or, when it
    reads no topic now, one with no partitions (``topic`` null: see ``_topic``)."""
    if not isinstance(status, ManyStatus):
        return [status]
    return status.topics or [PipelineStatus(status.pipeline, [], {}, status.now_ms)]


def _topic(row: PipelineStatus) -> str | None:
    """The topic of an object: null for a pipeline over many topics that reads none now."""
    return None if row.pipeline.multi else row.pipeline.topic


def offsets_show(rows: Sequence[tuple[str, Status | str]]) -> dict[str, Any]:
    """``rows``: (pipeline name, its status or why it could not be read)."""
    found = []
    for _, r in rows:
        if not isinstance(r, str):
            for one in objects(r):
                found.append({**one.as_dict(), "topic": _topic(one)})
    errors = _errors(rows)
    return _doc("offsets show", ok=not errors, pipelines=found, errors=errors)


def lag_row(row: PipelineStatus, pace: Pace | None) -> dict[str, Any]:
    """One pipeline (or one topic of a pipeline over many: see ``objects``) in ``workers
    lag``: the line it shows, as numbers; ``pace`` (--watch) since the last refresh."""
    p, flight = row.pipeline, row.flight
    last_ms = row.counters.get("last_ms", 0)
    eta = None if pace is None else pace.catch_up_seconds
    return {
        "pipeline": p.name, "cluster": p.cluster, "topic": _topic(row), "group": p.group,
        "mode": p.mode, "started": row.started, "start": str(p.start), "lag": row.lag,
        "oldest_unread_age_seconds": row.oldest_age, "partition_count": len(row.partitions),
        "partitions_held": row.held,
        "in_flight": {"batches": flight.batches, "records": flight.records,
                      "overdue": flight.overdue},
        "counters": dict(row.counters),
        "brake": None if row.brake is None else row.brake.as_dict(),
        "last_pull_age_seconds": (round(max(0, row.now_ms - last_ms) / 1000, 1)
                                  if last_ms else None),
        "read_per_second": _rounded(None if pace is None else pace.rate),
        "lag_change_per_second": _rounded(None if pace is None else pace.change),
        "catch_up_seconds": _rounded(eta),
    }  # fmt: skip


def pace_key(name: str, status: Status, one: PipelineStatus) -> str:
    """Whose pace: the pipeline, or ``pipeline/topic`` for a topic (``one``) of a pipeline
    over many (pipeline names hold no ``/``)."""
    return f"{name}/{one.pipeline.topic}" if isinstance(status, ManyStatus) else name


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def lag(rows: Sequence[tuple[str, Status | str]],
        paces: dict[str, Pace]) -> dict[str, Any]:  # fmt: skip
    """``paces``: per pipeline (``pace_key``: per topic of a pipeline over many), its pace
    since the last refresh (--watch)."""
    found = [lag_row(one, paces.get(pace_key(name, r, one)))
             for name, r in rows if not isinstance(r, str) for one in objects(r)]  # fmt: skip
    errors = _errors(rows)
    return _doc("lag", ok=not errors, time_ms=int(time.time() * 1000), pipelines=found,
                errors=errors)  # fmt: skip


@dataclass(frozen=True, slots=True)
class TopicReset:
    """One topic of a reset: ``rows`` what was stored (or, on a dry run, would be);
    ``bounds``: (log start, log end) per partition; ``held``: partitions a pull holds a lease
    on; ``clamped``: partitions a shift stopped at an edge of the log."""

    topic: str
    rows: Sequence[ResetRow]
    bounds: dict[int, tuple[int, int]]
    held: set[int]
    clamped: frozenset[int] = frozenset()

    def partitions(self) -> list[dict[str, Any]]:
        out = []
        for r in self.rows:
            start, end = self.bounds.get(r.partition, (None, None))
            outside = start is not None and end is not None and not start <= r.after <= end
            out.append({"partition": r.partition, "before": r.before, "after": r.after,
                        "log_start": start, "log_end": end, "outside_log": outside,
                        "clamped": r.partition in self.clamped,
                        "held": r.partition in self.held})  # fmt: skip
        return out


def offsets_reset(
    config: PipelineConfig, target: Target, dry_run: bool, rows: Sequence[ResetRow],
    bounds: dict[int, tuple[int, int]], held: set[int], clamped: frozenset[int] = frozenset(),
) -> dict[str, Any]:  # fmt: skip
    """A pipeline of one topic (see ``TopicReset`` for the arguments)."""
    parts = TopicReset(config.topic, rows, bounds, held, clamped).partitions()
    return _doc("offsets reset", ok=True, pipeline=config.name, cluster=config.cluster,
                topic=config.topic, group=config.group, method=target.method,
                target=target.text, time_ms=target.time_ms, dry_run=dry_run,
                partitions=parts)  # fmt: skip


def offsets_reset_many(
    config: PipelineConfig, target: Target, dry_run: bool, topics: Sequence[TopicReset]
) -> dict[str, Any]:
    """A pipeline over many topics: each partition row names its ``topic`` first; ``topic``
    is the one topic reset, or null when there were several."""
    parts = [{"topic": t.topic, **row} for t in topics for row in t.partitions()]
    one = topics[0].topic if len(topics) == 1 else None
    return _doc("offsets reset", ok=True, pipeline=config.name, cluster=config.cluster,
                topic=one, group=config.group, method=target.method, target=target.text,
                time_ms=target.time_ms, dry_run=dry_run, partitions=parts)  # fmt: skip


def produce(cluster: str, topic: str, result: Produced) -> dict[str, Any]:
    spans = [{"partition": p, "records": s.records, "first_offset": s.first_offset,
              "last_offset": s.last_offset}
             for p, s in sorted(result.partitions.items())]  # fmt: skip
    records = [{"line": n, "partition": p, "offset": o} for n, p, o in result.records]
    return _doc(
        "produce", ok=result.ok, cluster=cluster, topic=topic, sent=result.sent,
        failed=result.failed, first_failure=result.first_failure or None,
        without_key=result.without_key,
        invalid=[{"line": n, "reason": why} for n, why in result.invalid],
        partitions=spans, records=records, records_omitted=result.sent - len(records),
    )  # fmt: skip


def dlq_show(config: PipelineConfig, letters: Sequence[Letter], replayed: Sequence[bool],
             limit: int) -> dict[str, Any]:  # fmt: skip
    """``replayed``: per letter, whether a replay sent it; the last ``limit`` letters listed."""
    rows = [x.as_dict(r) for x, r in zip(letters, replayed, strict=True)][-limit:]
    return _doc(
        "dlq show", ok=True, pipeline=config.name, cluster=config.cluster,
        dead_letter_topic=config.dead_letter_topic, total=len(letters),
        pending=list(replayed).count(False),
        reasons=[{"reason": r, "count": n} for r, n in reason_counts(letters)], letters=rows,
    )  # fmt: skip


def _letter(x: Letter) -> dict[str, Any]:
    return {"partition": x.partition, "offset": x.offset, "source": x.source,
            "reason": x.reason, "value_dropped_bytes": x.dropped}  # fmt: skip


def dlq_replay(config: PipelineConfig, result: Replay, dry_run: bool) -> dict[str, Any]:
    return _doc(
        "dlq replay", ok=True, pipeline=config.name, cluster=config.cluster,
        topic=config.topic or None, dead_letter_topic=config.dead_letter_topic, dry_run=dry_run,
        letters=[_letter(x) for x in result.letters],
        unreplayable=[_letter(x) for x in result.unreplayable],
        positions=[{"partition": p, "offset": o} for p, o in sorted(result.positions.items())],
    )  # fmt: skip


def dlq_resume(config: PipelineConfig, cleared: Trip | None) -> dict[str, Any]:
    """``cleared``: the trip the resume cleared (None: the brake was not tripped)."""
    return _doc(
        "dlq resume", ok=True, pipeline=config.name, cluster=config.cluster,
        topic=config.topic or None, group=config.group, resumed=cleared is not None,
        brake=None if cleared is None else cleared.as_dict(),
    )  # fmt: skip
