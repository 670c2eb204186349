"""Operator resets of a pipeline's offsets, by each target kafka-consumer-groups knows: an edge,
an offset or a time (``--to``), a shift from the committed offset, a date-time, a duration
back from now, or a saved plan. ``plan_reset`` computes where each partition would go;
``apply_reset`` stores it as a reset (generation bumped: a pull that read before cannot write
over it)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import arrow

from workers.config.masking import clip
from workers.config.timeparse import parse_time, to_millis
from workers.kafka.consumer import Consumer
from workers.ops.context import OpsError
from workers.pulling.positions import ResetRow, edges, offsets_at, target_offsets
from workers.state.keys import Space
from workers.state.offsets import OffsetStore, Position

logger = logging.getLogger(__name__)

_OFFSET = re.compile(r"[0-9]+", re.ASCII)

Method = Literal["to", "shift_by", "to_datetime", "by_duration", "from_file"]
# The option of each method, as the command and its messages name it.
OPTIONS: dict[Method, str] = {
    "to": "--to", "shift_by": "--shift-by", "to_datetime": "--to-datetime",
    "by_duration": "--by-duration", "from_file": "--from-file",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Target:
    """Where a reset goes. ``text`` is the option's value as given (``from_file``: the path);
    ``when`` the time whose offsets are looked up (a ``--to`` time, ``to_datetime``,
    ``by_duration``), fixed once so a preview and the reset after it agree; ``shift`` the
    records to move by; ``offsets`` a plan's offset per partition."""

    method: Method
    text: str
    when: arrow.Arrow | None = None
    shift: int = 0
    offsets: Mapping[int, int] = field(default_factory=dict)

    @property
    def time_ms(self) -> int | None:
        return None if self.when is None else to_millis(self.when)

    def phrase(self) -> str:
        """How the question and the log name it: ``to latest``, ``by -5``, ``from plan.csv``."""
        if self.method == "shift_by":
            return f"by {self.shift:+d}"
        if self.method == "from_file":
            return "from the plan on stdin" if self.text == "-" else f"from {self.text}"
        if self.method == "by_duration" and self.when is not None:
            return f"to {_iso(self.when)} ({self.text.strip()} before now)"
        if self.method == "to_datetime" and self.when is not None:
            return f"to {_iso(self.when)}"
        return f"to {self.text}"


@dataclass(frozen=True, slots=True)
class Plan:
    """A reset computed, not yet stored: ``rows`` before/after per partition, ``bounds``
    (log start, log end) per partition, ``clamped`` the partitions a shift would have moved
    past an edge of the log (``after`` is that edge)."""

    rows: list[ResetRow]
    bounds: dict[int, tuple[int, int]]
    clamped: frozenset[int] = frozenset()

    @property
    def offsets(self) -> dict[int, int]:
        return {r.partition: r.after for r in self.rows}

    def outside(self) -> list[int]:
        """Partitions whose new offset lies outside the log (the out-of-range policy moves it)."""
        out = []
        for r in self.rows:
            start, end = self.bounds[r.partition]
            if not start <= r.after <= end:
                out.append(r.partition)
        return out


def plan_reset(store: OffsetStore, consumer: Consumer, space: Space, target: Target,
               partitions: Sequence[int]) -> Plan:  # fmt: skip
    """Where each of ``partitions`` would go (for ``from_file``: the plan's partitions).

    Raises ``ValueError`` for a ``--to`` offset beyond what is kept, and ``OpsError`` when a
    shift has no committed offset to start from (nothing stored, or a stored value that is
    not an offset)."""
    chosen = sorted(target.offsets) if target.method == "from_file" else sorted(partitions)
    bounds = edges(consumer, space.topic, chosen)
    before = store.read(space, chosen)
    clamped: set[int] = set()
    if target.method == "from_file":
        after = {p: target.offsets[p] for p in chosen}
    elif target.method == "shift_by":
        _check_committed(before, space)
        after = {}
        for p in chosen:
            start, end = bounds[p]
            wanted = (before[p].offset or 0) + target.shift
            after[p] = min(max(wanted, start), end)
            if after[p] != wanted:
                clamped.add(p)
    elif target.when is not None:
        after = offsets_at(consumer, space.topic, chosen, target.when)
    else:  # --to earliest, latest or an offset
        after = target_offsets(consumer, space.topic, chosen, target.text)
    rows = [ResetRow(p, before[p].offset, after[p]) for p in chosen]
    return Plan(rows, bounds, frozenset(clamped))


def apply_reset(store: OffsetStore, space: Space, plan: Plan, target: Target) -> list[ResetRow]:
    """Store ``plan`` as a reset; the rows say what was stored before (None: nothing)."""
    before = store.reset(space, plan.offsets)
    logger.warning(
        "%s: offsets reset %s: %s", space, target.phrase(),
        ", ".join(f"{p}: {before[p].offset} -> {o}" for p, o in sorted(plan.offsets.items())),
    )  # fmt: skip
    return [ResetRow(r.partition, before[r.partition].offset, r.after) for r in plan.rows]


def _check_committed(before: Mapping[int, Position], space: Space) -> None:
    """A shift starts from the committed offset: every partition must have a valid one."""
    broken = {p: pos.problem for p, pos in before.items() if pos.problem}
    if broken:
        p, problem = min(broken.items())
        raise OpsError(
            f"cannot shift partition {p} of {space.topic!r}: its stored offset is not valid "
            f"({problem}); reset it with --to first"
        )
    missing = sorted(p for p, pos in before.items() if pos.offset is None)
    if missing:
        raise OpsError(
            f"cannot shift partition(s) {clip(', '.join(map(str, missing)), 80)} of "
            f"{space.topic!r}: nothing is committed there yet; reset them with --to first, or "
            "choose the others with --partition"
        )


def to_target(text: str, now: arrow.Arrow) -> Target:
    """``--to``: ``earliest``, ``latest``, an offset, or a time (ISO 8601, relative to ``now``,
    ``@`` + epoch), which is fixed here. Raises ``ValueError`` for anything else."""
    stripped = text.strip(" ")
    if stripped in ("earliest", "latest") or _OFFSET.fullmatch(stripped):
        return Target("to", stripped)
    when = parse_time(stripped[1:] if stripped.startswith("@") else stripped, now)
    return Target("to", stripped, when=when)


def _iso(when: arrow.Arrow) -> str:
    return when.to("UTC").format("YYYY-MM-DDTHH:mm:ss.SSS") + "Z"
