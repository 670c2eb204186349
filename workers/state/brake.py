"""The dead-letter brake of a pipeline: counts its dead letters and stops it when there are
too many, instead of dead-lettering a whole topic after a bad deploy.

Two limits, each optional: more than ``max_ratio`` of the records of a window of ``window``
records read (tumbling: counts start again once a window is full), or more than
``max_consecutive`` dead letters in a row from one *source* (the pull's decoder, or one
stage). The counts live in Redis (``workers.state.brake_redis``), shared by every process;
``judge`` is the rule both the Lua script and the in-memory twin follow. A tripped brake
stays tripped until an operator resumes it (``workers dlq resume``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from workers.state.keys import Space

logger = logging.getLogger(__name__)

# A pipeline whose pulls the brake stopped is named in an error again this often.
REMIND_MS = 600_000
# The source of the dead letters a pull's decoder refuses; a stage's is its task name.
PULL = "pull"


@dataclass(frozen=True, slots=True)
class Limits:
    """A pipeline's limits; None switches one off."""

    window: int
    max_ratio: float | None
    max_consecutive: int | None

    @classmethod
    def of(cls, pipeline: Any) -> Limits | None:
        """The limits of a ``PipelineConfig``; None when both are off (no brake at all)."""
        ratio, most = pipeline.dead_letter_max_ratio, pipeline.dead_letter_max_consecutive
        if ratio is None and most is None:
            return None
        return cls(pipeline.dead_letter_window, ratio, most)

    @property
    def allowed(self) -> int:
        """Dead letters a window may hold (-1: no ratio limit); one more trips the brake."""
        return -1 if self.max_ratio is None else int(self.max_ratio * self.window)


@dataclass(slots=True)
class Tally:
    """The verdicts on a run of records or items, in order: how many were seen and
    dead-lettered, the dead letters before the first that passed (``head``), after the last
    that passed (``tail``), and the longest run of them (``longest``)."""

    seen: int = 0
    dead: int = 0
    head: int = 0
    tail: int = 0
    longest: int = 0

    def add(self, dead: bool) -> None:
        self.seen += 1
        if not dead:
            self.tail = 0
            return
        self.dead += 1
        self.tail += 1
        self.longest = max(self.longest, self.tail)
        if self.dead == self.seen:
            self.head += 1

    @classmethod
    def of(cls, verdicts: list[bool]) -> Tally:
        tally = cls()
        for dead in verdicts:
            tally.add(dead)
        return tally

    @property
    def passed(self) -> int:
        return self.seen - self.dead


@dataclass(frozen=True, slots=True)
class Trip:
    """Why and when a brake tripped: ``reason`` ``ratio`` or ``consecutive``; ``source`` the
    decoder (``pull``) or the stage whose dead letters tripped it; ``ratio`` the window's dead
    letters per record then; ``consecutive`` the source's dead letters in a row."""

    tripped_ms: int
    reason: str
    source: str
    ratio: float
    consecutive: int
    window_records: int
    window_dead: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "tripped_ms": self.tripped_ms, "reason": self.reason, "source": self.source,
            "ratio": round(self.ratio, 4), "consecutive": self.consecutive,
            "window_records": self.window_records, "window_dead_letters": self.window_dead,
        }  # fmt: skip

    def describe(self, limits: Limits | None) -> str:
        """The counts in words, with the limit that was passed."""
        if self.reason == "consecutive":
            limit = "" if limits is None else f" (limit {limits.max_consecutive})"
            return f"{self.consecutive} dead letters in a row from {self.source}{limit}"
        limit = "" if limits is None else f" (limit {limits.max_ratio:g} of {limits.window})"
        return (
            f"{self.window_dead} dead letters in a window of {self.window_records} records, "
            f"ratio {self.ratio:.2f}{limit}, the last from {self.source}"
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """A report's outcome: ``tripped`` (the letters must not be sent), and ``trip`` when this
    report tripped it (its caller logs the error)."""

    tripped: bool
    trip: Trip | None = None


class Brake(Protocol):
    """The brakes of every pipeline: ``RedisBrake`` and the twin ``MemoryBrake``."""

    def report(
        self, space: Space, limits: Limits, source: str, tally: Tally, counted: int
    ) -> Verdict:
        """Count ``tally`` (of ``source``) and ``counted`` records read into the window;
        tripped when the brake was tripped already or these dead letters trip it."""

    def passed(self, space: Space, source: str) -> None:
        """``source`` let items through and dead-lettered none: its run of dead letters ends."""

    def check(self, space: Space, remind_ms: int = REMIND_MS) -> tuple[Trip | None, bool]:
        """The trip, if tripped, and whether to name it in the logs again (at most once per
        ``remind_ms`` over every process)."""

    def state(self, space: Space) -> Trip | None:
        """The trip, if tripped."""

    def resume(self, space: Space) -> Trip | None:
        """Clear the trip and every count; returns the trip cleared (None: was not tripped)."""


@dataclass(slots=True)
class Counts:
    """What a brake keeps for one pipeline."""

    seen: int = 0
    dead: int = 0
    runs: dict[str, int] = field(default_factory=dict)
    trip: Trip | None = None
    reminded_ms: int = 0


def judge(
    counts: Counts, limits: Limits, source: str, tally: Tally, counted: int, now_ms: int
) -> Verdict:
    """The rule of a report, applied to ``counts`` (the Lua script follows it line by line)."""
    if counts.trip is not None:
        return Verdict(True)
    if limits.max_ratio is not None:
        # A full window: the next records start an empty one. A stage's dead letters (of
        # records the pull counted before) go to the current window, full or not.
        if counted and counts.seen >= limits.window:
            counts.seen = counts.dead = 0
        counts.seen += counted
        counts.dead += tally.dead
    peak = 0
    if limits.max_consecutive is not None:
        run = counts.runs.get(source, 0)
        if tally.passed == 0:
            run = peak = run + tally.dead
        else:
            peak, run = max(run + tally.head, tally.longest), tally.tail
        counts.runs[source] = run
    if limits.max_consecutive is not None and peak > limits.max_consecutive:
        reason = "consecutive"
    elif limits.max_ratio is not None and counts.dead > limits.allowed:
        reason = "ratio"
    else:
        return Verdict(False)
    ratio = min(1.0, counts.dead / counts.seen) if counts.seen else 0.0
    counts.trip = Trip(now_ms, reason, source, ratio, peak, counts.seen, counts.dead)
    counts.reminded_ms = now_ms
    return Verdict(True, counts.trip)


class MemoryBrake:
    """The twin of ``RedisBrake`` (one per ``MemoryState``-like world); ``clock`` in seconds."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.counts: dict[Space, Counts] = {}
        self.trips = 0

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def report(
        self, space: Space, limits: Limits, source: str, tally: Tally, counted: int
    ) -> Verdict:
        with self.lock:
            counts = self.counts.setdefault(space, Counts())
            verdict = judge(counts, limits, source, tally, counted, self._now_ms())
            self.trips += verdict.trip is not None
            return verdict

    def passed(self, space: Space, source: str) -> None:
        with self.lock:
            self.counts.setdefault(space, Counts()).runs.pop(source, None)

    def check(self, space: Space, remind_ms: int = REMIND_MS) -> tuple[Trip | None, bool]:
        with self.lock:
            counts = self.counts.get(space)
            if counts is None or counts.trip is None:
                return None, False
            now = self._now_ms()
            remind = now - counts.reminded_ms >= remind_ms
            if remind:
                counts.reminded_ms = now
            return counts.trip, remind

    def state(self, space: Space) -> Trip | None:
        with self.lock:
            counts = self.counts.get(space)
            return None if counts is None else counts.trip

    def resume(self, space: Space) -> Trip | None:
        with self.lock:
            counts = self.counts.pop(space, None)
            return None if counts is None else counts.trip


def log_tripped(pipeline: str, trip: Trip, limits: Limits | None) -> None:
    """The one error of a trip (logged by the process whose report tripped it)."""
    logger.error(
        "pipeline %s: dead-letter brake tripped: %s; its pulls stop and batches with dead "
        "letters are held (nothing is dead-lettered or committed past them). Fix the cause, "
        "then resume it: workers dlq resume %s",
        pipeline, trip.describe(limits), pipeline,
    )  # fmt: skip


def log_still_tripped(pipeline: str, trip: Trip, limits: Limits | None) -> None:
    """The reminder, at most every ``REMIND_MS`` over every process."""
    minutes = max(0.0, time.time() * 1000 - trip.tripped_ms) / 60_000
    logger.error(
        "pipeline %s: pulls stay stopped by the dead-letter brake tripped %.0f min ago (%s); "
        "resume it with: workers dlq resume %s",
        pipeline, minutes, trip.describe(limits), pipeline,
    )  # fmt: skip
