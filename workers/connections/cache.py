"""The per-process cache of Kafka and Redis clients: lazy, one consumer per thread, fork-safe.
How a client is built and closed is ``workers.connections.clients``.

Nothing connects at import. Clients are created on first use, replaced after the cluster's
``reconnect_seconds`` and after ``discard`` (a connection error), dropped without being
touched in a forked child (so no socket crosses a fork), and closed at process shutdown.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery import signals

from workers.config import Settings, settings_for
from workers.connections.clients import Factories, build, close_quietly, redis_options
from workers.connections.outages import Outages

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
RETIRE_GRACE = 30.0
_PER_THREAD = ("consumer", "admin", "group")


@dataclass(slots=True)
class _Entry:
    client: Any
    created: float


@dataclass(slots=True)
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    entries: dict[tuple[str, str, int], _Entry] = field(default_factory=dict)
    # Shared clients replaced for age, closed only after RETIRE_GRACE: another thread may
    # still be sending on one.
    retired: list[tuple[str, Any, float]] = field(default_factory=list)


# Clients abandoned in a forked child. Kept referenced so their finalisers (KafkaProducer
# closes itself in __del__) never run there: the sockets belong to the parent.
_ORPHANS: list[Any] = []
_LIVE: weakref.WeakSet[Connections] = weakref.WeakSet()


class Connections:
    """One cache of clients for one process.

    ``producer``/``admin`` clients are shared by the threads of the process; a ``consumer`` is
    never shared (one per thread). A cluster that failed is not retried before
    ``error_backoff`` seconds have passed: calls in between raise ``RecoverableError`` at once,
    and the failure is logged once, not on every call.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = time.monotonic,
        factories: Factories | None = None,
        error_backoff: float = 5.0,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._factories = factories or Factories()
        self._error_backoff = error_backoff
        self._outages = Outages(clock, error_backoff)
        self._pid = os.getpid()
        self._state = _State()
        _LIVE.add(self)

    # -- public getters ---------------------------------------------------------------------

    def producer(self, cluster: str) -> Any:
        """The process's producer for ``cluster`` (thread-safe, shared)."""
        conf = self.settings.cluster(cluster)
        return self._get(
            "producer", cluster, 0, conf.reconnect_seconds, conf.producer_options,
            conf.client_library,
        )  # fmt: skip

    def consumer(self, cluster: str) -> Any:
        """This thread's consumer for ``cluster``: manual assignment, no group, no auto commit."""
        conf = self.settings.cluster(cluster)
        thread = threading.get_ident()
        return self._get(
            "consumer", cluster, thread, conf.reconnect_seconds, conf.consumer_options,
            conf.client_library,
        )  # fmt: skip

    def admin(self, cluster: str) -> Any:
        """This thread's admin client for ``cluster``."""
        conf = self.settings.cluster(cluster)
        thread = threading.get_ident()
        return self._get("admin", cluster, thread, conf.reconnect_seconds, conf.admin_options)

    def group(self, cluster: str, group: str) -> Any:
        """This thread's kafka-python consumer with ``group``'s id on ``cluster``: it commits
        and reads offsets under the group without ever joining it (``kafka_copy``)."""
        conf = self.settings.cluster(cluster)
        thread = threading.get_ident()
        return self._get(
            "group", f"{cluster}/{group}", thread, conf.reconnect_seconds,
            lambda: conf.group_options(group),
        )  # fmt: skip

    def redis(self, url: str | None = None) -> Any:
        """The Redis client for ``url`` (default: the offsets Redis). Thread-safe, shared."""
        url = url or self.settings.redis.url
        # redis-py reconnects by itself; no age limit is needed.
        return self._get("redis", url, 0, None, lambda: redis_options(self.settings, url))

    # -- invalidation -----------------------------------------------------------------------

    def discard(self, kind: str, name: str, error: BaseException | None = None) -> None:
        """Close and forget the ``kind`` client of cluster/URL ``name``: for consumers and admin
        clients only the calling thread's (other threads may be using theirs).

        Call it after a connection error; the next getter call builds a new client.
        """
        self._check_fork()
        thread = threading.get_ident()
        with self._state.lock:
            keys = [
                k
                for k in self._state.entries
                if k[0] == kind and k[1] == name and (kind not in _PER_THREAD or k[2] == thread)
            ]
            stale = [self._state.entries.pop(k).client for k in keys]
        if error is not None:
            # One immediate retry after a broken connection; backoff only if that fails too.
            self._outages.failed(kind, name, error, retry_now=True)
        for client in stale:
            close_quietly(kind, client)

    def close(self) -> None:
        """Close every client (at process shutdown). The cache stays usable afterwards."""
        self._check_fork()
        with self._state.lock:
            entries = list(self._state.entries.items())
            self._state.entries.clear()
            retired, self._state.retired = self._state.retired, []
        for (kind, _name, _thread), entry in entries:
            close_quietly(kind, entry.client)
        for kind, client, _ in retired:
            close_quietly(kind, client)

    def reset_after_fork(self) -> None:
        """Forget every client without touching it: its sockets belong to the parent."""
        _ORPHANS.extend(e.client for e in self._state.entries.values())
        _ORPHANS.extend(client for _, client, _ in self._state.retired)
        # The parent's lock may have been held by another thread at fork time.
        self._state = _State()
        self._outages = Outages(self._clock, self._error_backoff)
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self._state.entries)

    # -- internals --------------------------------------------------------------------------

    def _check_fork(self) -> None:
        if self._pid != os.getpid():  # forked without our hook (e.g. os.fork in a test)
            self.reset_after_fork()

    def _get(
        self,
        kind: str,
        name: str,
        thread: int,
        max_age: float | None,
        options: Callable[[], dict[str, Any]],
        library: str = "kafka-python",
    ) -> Any:
        self._check_fork()
        key = (kind, name, thread)
        now = self._clock()
        with self._state.lock:
            entry = self._state.entries.get(key)
            if entry is not None and (max_age is None or now - entry.created < max_age):
                return entry.client
            if entry is not None:
                del self._state.entries[key]
                if kind not in _PER_THREAD:  # shared: another thread may be using it
                    self._state.retired.append((kind, entry.client, now))
            expired = [r for r in self._state.retired if now - r[2] >= RETIRE_GRACE]
            if expired:
                self._state.retired = [r for r in self._state.retired if r not in expired]
        for old_kind, old, _ in expired:
            close_quietly(old_kind, old)
        if entry is not None:
            logger.debug("replacing %s for %s after %.0f s", kind, name, now - entry.created)
            if kind in _PER_THREAD:
                close_quietly(kind, entry.client)
        self._outages.check(kind, name)
        client = build(self._factories, self._outages, kind, name, options, library)
        with self._state.lock:
            raced = self._state.entries.get(key)
            if raced is None:
                self._state.entries[key] = _Entry(client, now)
        if raced is not None:  # another thread built one meanwhile: keep theirs, close ours
            close_quietly(kind, client)
            return raced.client
        self._outages.succeeded(kind, name)
        return client


# -- process-wide cache per Celery app, and the fork / shutdown hooks -------------------------

_BY_APP: weakref.WeakKeyDictionary[Any, Connections] = weakref.WeakKeyDictionary()


def connections_for(app: Any) -> Connections:
    """The process's cache for ``app`` (created on first use; connects to nothing yet)."""
    cache = _BY_APP.get(app)
    if cache is None:
        cache = _BY_APP[app] = Connections(settings_for(app))
    return cache


def _reset_all_after_fork() -> None:
    for cache in list(_LIVE):
        cache.reset_after_fork()


def _close_all(**_: Any) -> None:
    for cache in list(_LIVE):
        cache.close()


os.register_at_fork(after_in_child=_reset_all_after_fork)
signals.worker_process_init.connect(lambda **_: _reset_all_after_fork(), weak=False)
signals.worker_process_shutdown.connect(_close_all, weak=False)
