"""Waiting for a condition in tests and benchmarks, with the state of the processes at hand."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    check: Callable[[], None] | None = None,
    explain: Callable[[], str] | None = None,
    interval: float = 0.05,
) -> None:
    """Return once ``condition()`` holds. ``check()`` runs between tries (to fail at once when a
    process died); after ``timeout`` seconds ``TimeoutError`` says ``what`` was awaited, with
    ``explain()`` (logs, say) after it."""
    deadline = time.monotonic() + timeout
    while not condition():
        if check is not None:
            check()
        if time.monotonic() > deadline:
            detail = explain() if explain is not None else ""
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}\n{detail}")
        time.sleep(interval)
