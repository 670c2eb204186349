"""Rendering for the command: aligned tables, counts, ages; JSON documents."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from workers.state.brake import Limits


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns aligned to their widest cell; numbers right-aligned, text left-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    numeric = [_numeric([row[i] for row in rows]) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(list(headers)), *(line(row) for row in cells)])


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numeric(column: Sequence[Any]) -> bool:
    """Right-aligned: numbers, with None (shown as -) for unknown ones; not an empty column."""
    return any(_number(v) for v in column) and all(_number(v) or v is None for v in column)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    text = str(value)
    # Text from Redis or Kafka (a holder's task, a reason) must not break the table's rows.
    return (
        text
        if text.isprintable()
        else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    )


def age(seconds: float | None) -> str:
    """``4s``, ``3m12s``, ``2h05m``, ``3d04h``; ``-`` for None."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def to_json(document: Any, compact: bool = False) -> str:
    """``document`` as JSON: indented by two spaces, or on one line (``compact``). Non-ASCII
    text is escaped, so the output is ASCII whatever the terminal's encoding."""
    if compact:
        return json.dumps(document, separators=(",", ":"))
    return json.dumps(document, indent=2)


def brake_text(row: Any) -> str:
    """A tripped dead-letter brake of a ``PipelineStatus``: when, why, and how to resume."""
    trip = row.brake
    ago = age(max(0, row.now_ms - trip.tripped_ms) / 1000)
    counts = trip.describe(Limits.of(row.pipeline))
    return f"tripped {ago} ago: {counts}; resume with: workers dlq resume {row.pipeline.name}"
