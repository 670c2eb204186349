"""``python -m bench.isotime``: what an event's ISO 8601 time costs the parse stage, before
(``arrow.get``) and after (``datetime.fromisoformat`` first, arrow for the other forms), side by
side in one run. In-process, no services: see bench/README.md "ISO event times"."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import arrow

from bench.events import Events
from bench.report import machine, write
from workers.alarms import events

DEFAULT_JSON = Path(__file__).resolve().parent / "isotime.json"
NOW = 1_700_000_000_000  # the events' clock: 2023-11-14T22:13:20Z
# The forms producers send, in turn: Z with milliseconds, an offset, no zone, Z with seconds.
FORMS: tuple[Callable[[datetime], str], ...] = (
    lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z",
    lambda t: t.astimezone(timezone(timedelta(hours=8))).isoformat(timespec="seconds"),
    lambda t: t.strftime("%Y-%m-%dT%H:%M:%S"),
    lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ"),
)
LABELS = {
    "time_before": "ISO time -> ms, before (arrow.get)",
    "time_after": "ISO time -> ms, after (fromisoformat, arrow fallback)",
    "event_before": "parse_event with an ISO time, before",
    "event_after": "parse_event with an ISO time, after",
}


def arrow_ms(text: str) -> int:
    """The conversion before the fast path, as ``event_time`` called it."""
    return int(arrow.get(text).float_timestamp * 1000)


@contextmanager
def conversion(convert: Callable[[str], int]) -> Iterator[None]:
    """``parse_event`` with ``convert`` for its ISO times."""
    kept = events.iso_ms
    events.iso_ms = convert
    try:
        yield
    finally:
        events.iso_ms = kept


def sample(n: int) -> list[dict[str, Any]]:
    """``n`` decoded bench events whose times are ISO strings of the four forms, in turn."""
    made = Events(seed=11)
    out = []
    for i in range(n):
        event = json.loads(made.next(i, NOW)[1])
        when = datetime.fromtimestamp((NOW - 60_000 * (i % 600) - i % 997) / 1000, timezone.utc)
        event["time"] = FORMS[i % len(FORMS)](when)
        out.append(event)
    return out


def per_event(fn: Callable[[], None], n: int) -> float:
    """Microseconds per event of one pass."""
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) / n * 1e6


def run(n: int, repeat: int) -> dict[str, list[float]]:
    sampled = sample(n)
    texts = [e["time"] for e in sampled]
    new_ms = events.iso_ms
    expected = [arrow_ms(t) for t in texts]
    if [new_ms(t) for t in texts] != expected:
        raise AssertionError("the fast path and arrow disagree on the sample")

    def times(convert: Callable[[str], int]) -> Callable[[], None]:
        def go() -> None:
            for text in texts:
                convert(text.strip())

        return go

    def parses(convert: Callable[[str], int]) -> Callable[[], None]:
        def go() -> None:
            with conversion(convert):
                for event in sampled:
                    events.parse_event(event, NOW, 300_000)

        return go

    passes = {
        "time_before": times(arrow_ms),
        "time_after": times(new_ms),
        "event_before": parses(arrow_ms),
        "event_after": parses(new_ms),
    }
    for go in passes.values():  # warm-up: imports, caches, regexes
        go()
    runs: dict[str, list[float]] = {name: [] for name in passes}
    for i in range(repeat):  # interleaved, so that drift hits before and after alike
        for name, go in passes.items():
            runs[name].append(per_event(go, n))
        say(f"  {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in runs.items()))
    return runs


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def table(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"{m['cores']} cores, {m['cpu']}; Python {m['python']}, arrow {m['arrow']}; load "
        f"average {m['load_average_at_start']} at the start, {m['load_average_at_end']} at the end",
        f"{result['events']:,} events x {result['repeat']} passes, interleaved; times in turn: "
        + ", ".join(result["forms"]),
        "",
        f"{'figure':<56}{'median':>8}{'min':>8}{'max':>8}  unit",
    ]
    for key, figure in result["figures"].items():
        lines.append(f"{LABELS[key]:<56}{figure['median']:>8.2f}{figure['min']:>8.2f}"
                     f"{figure['max']:>8.2f}  µs/event")  # fmt: skip
    lines.append("")
    for name, value in result["ratios"].items():
        lines.append(f"{name:<56}{value:>8.1f}  x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.isotime", description=__doc__)
    p.add_argument("--events", type=int, default=20_000, help="events per pass (%(default)s)")
    p.add_argument("--repeat", type=int, default=5, help="passes of each figure (%(default)s)")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where results go")
    args = p.parse_args(argv)
    result: dict[str, Any] = {
        "command": "python -m bench.isotime" + "".join(f" {a}" for a in (argv or sys.argv[1:])),
        "machine": {**machine("none (in-process)"), "arrow": metadata.version("arrow")},
        "events": args.events,
        "repeat": args.repeat,
        "forms": [form(datetime(2023, 11, 14, 22, 13, 10, 123000, timezone.utc)) for form in FORMS],
    }
    runs = run(args.events, args.repeat)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    medians = {k: statistics.median(v) for k, v in runs.items()}
    result["figures"] = {
        k: {"unit": "µs/event", "runs": [round(r, 3) for r in v], "median": round(medians[k], 3),
            "min": round(min(v), 3), "max": round(max(v), 3)}
        for k, v in runs.items()
    }  # fmt: skip
    result["ratios"] = {
        "time: before / after (medians)": round(medians["time_before"] / medians["time_after"], 1),
        "parse_event: before / after (medians)": round(
            medians["event_before"] / medians["event_after"], 1
        ),
    }
    print(table(result))
    write(result, args.json)
    say(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
