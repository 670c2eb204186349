"""A reading that may hang (a silent Redis, a broker gone), run in its own thread so that the
one waiting for it can give up at a deadline, and remembered for a while."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """What one run gave: its ``value``, or the ``error`` it raised; ``at`` is when it ended."""

    value: T | None
    error: Exception | None
    at: float


class Probe(Generic[T]):
    """Runs ``read`` in a daemon thread of its own, never twice at the same time.

    ``request`` starts a run unless one is running or the last one ended less than
    ``max_age`` seconds ago; ``wait`` blocks at most ``timeout`` seconds for the run in
    progress. A run that outlasts every wait keeps going (a client blocked in a socket cannot
    be interrupted) and its outcome counts once it ends; meanwhile no other run starts, so a
    hung service costs one thread, not one per scrape. The thread is a daemon: it never holds
    up the end of the process. One thread for every run keeps each run on the same
    per-thread Kafka consumer.
    """

    def __init__(
        self, name: str, read: Callable[[], T], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        self._read = read
        self._clock = clock
        self._cond = threading.Condition()
        self._running = False
        self._last: Outcome[T] | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        with self._cond:
            return self._running

    @property
    def last(self) -> Outcome[T] | None:
        """The outcome of the last run that ended, if any."""
        with self._cond:
            return self._last

    def request(self, max_age: float) -> None:
        with self._cond:
            if self._running:
                return
            if self._last is not None and self._clock() - self._last.at < max_age:
                return
            self._running = True
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name=f"probe {self.name}", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def wait(self, timeout: float) -> bool:
        """Wait for the run in progress; False when it is still running after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._running:
                    self._cond.wait()
            try:
                outcome: Outcome[T] = Outcome(self._read(), None, self._clock())
            except Exception as exc:  # noqa: BLE001 - the thread's outermost boundary
                outcome = Outcome(None, exc, self._clock())
            with self._cond:
                self._last = outcome
                self._running = False
                self._cond.notify_all()
