"""Keeps a Celery worker alive when its Redis broker restarts (kombu Redis transport fix).

``install()`` makes a detached Redis channel raise a connection error instead of AttributeError.
"""

from __future__ import annotations

import functools
from typing import Any

import redis.exceptions
from kombu.transport import redis as kombu_redis

__all__ = ["install", "installed"]

_MARK = "_workers_detached_transport_fix"


def _detached(channel: Any) -> bool:
    """True when the channel's transport was released by ``Connection.collect()``/``close()``."""
    transport = getattr(channel, "connection", None)
    return transport is None or getattr(transport, "client", None) is None


def _patched(original: Any) -> Any:
    @functools.wraps(original)
    def _connparams(self: Any, *args: Any, **kwargs: Any) -> Any:
        # After a lost connection Celery 5.7 calls collect() and then close() on the same
        # kombu Connection. collect() detaches the transport (transport.client = None) but keeps
        # the default channel; close() then closes that channel again, and restoring its unacked
        # messages needs a new pool, built from transport.client. Without this check that is
        # AttributeError ('hostname'), which ignore_errors() lets through and the worker exits.
        # A connection error is what the channel really has, and every caller handles it.
        if _detached(self):
            raise redis.exceptions.ConnectionError(
                "kombu Redis channel used after its connection was closed"
            )
        return original(self, *args, **kwargs)

    setattr(_connparams, _MARK, True)
    return _connparams


def installed() -> bool:
    """Whether ``install()`` has patched kombu's Redis channel in this process."""
    return bool(getattr(kombu_redis.Channel._connparams, _MARK, False))


def install() -> None:
    """Patch ``kombu.transport.redis.Channel._connparams``; calling it again does nothing.

    Covers the Sentinel channel too (it inherits the method). Call before the worker connects.
    """
    if installed():
        return
    kombu_redis.Channel._connparams = _patched(  # type: ignore[method-assign]
        kombu_redis.Channel._connparams
    )
