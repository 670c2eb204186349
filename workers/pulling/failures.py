"""Pulls that keep failing: backoff, and one log line per kind of failure, not one per cycle.

A pipeline's pull that fails (Redis or Kafka down, a topic missing, a bug) is not tried again
in this process before its backoff has passed (1 s doubling to 60 s). The first failure of a
kind is logged with its traceback; the same kind again is counted quietly, and summed up at
most every ``SUMMARY_EVERY`` seconds; the first success after failures is logged once. State is
per process: a prefork worker's processes each log a failure once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 60.0
SUMMARY_EVERY = 300.0


def kind_of(error: BaseException) -> str:
    """What makes two failures the same: the exception's type and its cause's type."""
    cause = error.__cause__ or error.__context__
    return type(error).__name__ + (f" from {type(cause).__name__}" if cause is not None else "")


@dataclass(slots=True)
class _State:
    since: float
    retry_at: float
    count: int = 0
    kinds: set[str] = field(default_factory=set)
    summarized: float = 0.0


@dataclass
class Failures:
    """Failures per pipeline on ``clock``."""

    clock: Callable[[], float] = time.monotonic
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _states: dict[str, _State] = field(default_factory=dict, repr=False)

    def waiting(self, pipeline: str) -> float:
        """Seconds until the pipeline's next pull may run (0: now)."""
        with self._lock:
            state = self._states.get(pipeline)
            return 0.0 if state is None else max(0.0, state.retry_at - self.clock())

    def failed(self, pipeline: str, error: BaseException) -> bool:
        """Note a failure and back off; True when it is the first of its kind (the caller then
        lets it be logged in full), False when it was counted quietly."""
        now = self.clock()
        kind = kind_of(error)
        with self._lock:
            state = self._states.setdefault(pipeline, _State(since=now, retry_at=now))
            state.count += 1
            delay = min(FIRST_BACKOFF * 2 ** (state.count - 1), MAX_BACKOFF)
            state.retry_at = now + delay
            first = kind not in state.kinds
            state.kinds.add(kind)
            summary = not first and now - state.summarized >= SUMMARY_EVERY
            if summary or first:
                state.summarized = now
            count, since = state.count, state.since
        if summary:
            logger.error(
                "pipeline %s: pulls still failing (%d failures in %.0f s, last: %s: %s); next "
                "attempt in %.0f s",
                pipeline, count, now - since, kind, error, delay,
            )  # fmt: skip
        elif not first:
            logger.debug("pipeline %s: pull failed again (%s); backing off %.1f s", pipeline,
                         kind, delay)  # fmt: skip
        return first

    def succeeded(self, pipeline: str) -> None:
        """The pipeline pulls again: forget its failures, logging the recovery once."""
        with self._lock:
            state = self._states.pop(pipeline, None)
        if state is not None:
            logger.warning(
                "pipeline %s: pulls work again after %d failures in %.0f s",
                pipeline, state.count, self.clock() - state.since,
            )  # fmt: skip

    def clear(self) -> None:
        with self._lock:
            self._states.clear()


PULL_FAILURES = Failures()


def _forget_in_child() -> None:
    # A forked child starts afresh, with a new lock (another thread may hold the parent's).
    PULL_FAILURES._lock = threading.Lock()
    PULL_FAILURES._states = {}


os.register_at_fork(after_in_child=_forget_in_child)
