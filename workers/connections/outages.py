"""Outages of the services clients are built for: exponential backoff, logged once.

A (kind, name) that failed is not tried again before its backoff has passed (5 s doubling to
60 s); the first failure of an outage is logged as a warning, repeats at debug level, and the
recovery once. A failure long after the last one starts a new outage.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from workers.config import mask_url
from workers.exceptions import RecoverableError

logger = logging.getLogger(__name__)

MAX_BACKOFF = 60.0
# A failure this long after the last one starts a new outage (logged again, backoff reset).
FORGET_AFTER = 300.0


@dataclass(slots=True)
class _Failure:
    since: float
    last: float
    retry_at: float
    count: int = 0
    reason: str = ""
    recovered: bool = False


@dataclass
class Outages:
    """Failures per (kind, name) on ``clock``; ``first_backoff`` seconds after the first one."""

    clock: Callable[[], float]
    first_backoff: float = 5.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _failures: dict[tuple[str, str], _Failure] = field(default_factory=dict, repr=False)

    def check(self, kind: str, name: str) -> None:
        """Raise ``RecoverableError`` while ``kind`` for ``name`` is in its backoff."""
        now = self.clock()
        with self._lock:
            failure = self._failures.get((kind, name))
            if failure is None or failure.recovered or now >= failure.retry_at:
                return
            reason, wait = failure.reason, failure.retry_at - now
        raise RecoverableError(
            f"{kind} for {shown(name)} unavailable ({reason}); next attempt in {wait:.1f} s"
        )

    def failed(self, kind: str, name: str, error: BaseException, retry_now: bool = False) -> None:
        """Note a failure; ``retry_now`` allows one immediate retry (a connection that broke)."""
        now = self.clock()
        with self._lock:
            failure = self._failures.get((kind, name))
            if failure is None or now - failure.last > FORGET_AFTER:
                failure = self._failures[(kind, name)] = _Failure(now, now, now)
            failure.recovered = False
            failure.last = now
            failure.count += 1
            failure.reason = type(error).__name__
            # Exponential backoff: a dead broker is not hammered by every task in a loop.
            first = failure.count == 1
            delay = min(self.first_backoff * 2 ** (failure.count - 1), MAX_BACKOFF)
            if first and retry_now:
                delay = 0.0
            failure.retry_at = now + delay
        # Logged once per outage; repeats go to debug so a dead broker cannot flood the log.
        log = logger.warning if first else logger.debug
        log("%s for %s failed: %r (next attempt in %.1f s)", kind, shown(name), error, delay)

    def succeeded(self, kind: str, name: str) -> None:
        """Note a working client: an outage in progress is over (logged once). The failure is
        kept, not dropped, so a connection that breaks again soon continues the backoff."""
        now = self.clock()
        with self._lock:
            failure = self._failures.get((kind, name))
            if failure is None or failure.recovered:
                return
            failure.recovered = True
            count, since = failure.count, failure.since
        logger.info(
            "%s for %s connected again after %d failures in %.1f s",
            kind, shown(name), count, now - since,
        )  # fmt: skip


def shown(name: str) -> str:
    """A cluster name as is, a URL with its password masked."""
    return mask_url(name) if "://" in name else name
