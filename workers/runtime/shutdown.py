"""Graceful stop of long-lived consumers when their Celery worker shuts down.

A warm shutdown (SIGTERM, ``celery control shutdown``) waits for running tasks, and nothing
tells a task it should end. The worker's main process therefore sets a flag in a shared
anonymous memory page that its forked pool processes inherit; consumers check it between
polls, finish the batch in hand, commit, release their leases and return. A pool process
that gets SIGTERM itself (a process-group kill) sets its own flag while a consumer runs.
"""

from __future__ import annotations

import logging
import mmap
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import bootsteps, signals

logger = logging.getLogger(__name__)

# Shared with every process forked after import (the prefork pool's default start method).
_SHARED = mmap.mmap(-1, 1)
_local = threading.Event()


def request_stop() -> None:
    """Ask every consumer of this worker (this process and its pool children) to stop."""
    _SHARED[0] = 1
    _local.set()


def stop_requested() -> bool:
    return _SHARED[0] == 1 or _local.is_set()


def clear() -> None:
    """Forget a stop request (tests, and a process that reuses the module after a stop)."""
    _SHARED[0] = 0
    _local.clear()


class StopConsumers(bootsteps.StartStopStep):
    """Worker bootstep: checks the settings and the pipelines' stages as the worker starts (a
    bad one stops it with the ``ConfigError``), and stops consumers before the pool waits for
    its tasks."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        from workers.config import settings_for
        from workers.pulling.engine import check_stages

        super().__init__(worker, **kwargs)
        check_stages(worker.app, settings_for(worker.app))

    def stop(self, worker: Any) -> None:
        request_stop()

    def shutdown(self, worker: Any) -> None:
        request_stop()


def _on_shutting_down(**_: Any) -> None:
    request_stop()


signals.worker_shutting_down.connect(_on_shutting_down, weak=False)


@contextmanager
def sigterm_stops() -> Iterator[None]:
    """While a consumer runs, SIGTERM to this process asks it to stop instead of killing it.

    Only in a process's main thread (where a prefork task runs); elsewhere it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: Any) -> None:
        logger.warning("SIGTERM: the running consumer stops after its batch in hand")
        _local.set()

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
