"""What the librdkafka adapters share: its errors as kafka-python's, its log lines through the
package's masking, and its handles left alone in a forked child.

librdkafka runs threads of its own. After a fork the child has none of them, and destroying a
handle there waits for them: a handle the parent built is never used nor freed in a child.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import weakref
from typing import Any, Protocol

import confluent_kafka
from kafka import errors as kafka_errors

from workers.runtime.logmask import guard_kafka_logs

logger = logging.getLogger(__name__)

RdKafkaError = confluent_kafka.KafkaError
# The logger librdkafka's own lines go to (at its levels), masked like kafka-python's.
LIBRDKAFKA_LOGGER = "workers.kafka.rdkafka.librdkafka"
# librdkafka reports a fetch position outside the log as either code: the broker's answer, or
# its own when ``auto.offset.reset`` is ``error`` and the reset is refused.
OUT_OF_RANGE = frozenset({RdKafkaError.OFFSET_OUT_OF_RANGE, RdKafkaError._AUTO_OFFSET_RESET})

# librdkafka's own (negative) codes that kafka-python has a class for; any other is KafkaError.
_LOCAL: dict[int, type[kafka_errors.KafkaError]] = {
    RdKafkaError._TRANSPORT: kafka_errors.KafkaConnectionError,
    RdKafkaError._ALL_BROKERS_DOWN: kafka_errors.KafkaConnectionError,
    RdKafkaError._RESOLVE: kafka_errors.KafkaConnectionError,
    RdKafkaError._TIMED_OUT: kafka_errors.KafkaTimeoutError,
    RdKafkaError._MSG_TIMED_OUT: kafka_errors.KafkaTimeoutError,
    RdKafkaError._QUEUE_FULL: kafka_errors.KafkaTimeoutError,
    RdKafkaError._UNKNOWN_TOPIC: kafka_errors.UnknownTopicOrPartitionError,
    RdKafkaError._UNKNOWN_PARTITION: kafka_errors.UnknownTopicOrPartitionError,
    RdKafkaError._INVALID_ARG: kafka_errors.KafkaConfigurationError,
}


class Forkable(Protocol):
    def abandon(self) -> None: ...


def translate(error: Any) -> kafka_errors.KafkaError:
    """kafka-python's error for a librdkafka ``KafkaError`` (or a ``KafkaException`` holding
    one): the broker's codes are Kafka's own, so kafka-python's class for the code; librdkafka's
    local codes map to the nearest class, else ``KafkaError``. The message keeps librdkafka's."""
    if isinstance(error, confluent_kafka.KafkaException) and error.args:
        error = error.args[0]
    if not isinstance(error, RdKafkaError):
        return kafka_errors.KafkaError(f"librdkafka: {error!r}")
    code = error.code()
    cls = kafka_errors.for_code(code) if code > 0 else _LOCAL.get(code, kafka_errors.KafkaError)
    return cls(f"{error.str()} (librdkafka {error.name()})")


class Problems:
    """Errors librdkafka reports outside any call (its ``error_cb``): logged, and a fatal one
    kept for the adapter to raise at its next call. Held apart from the adapter so that the
    handle's callback keeps no cycle through it."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.fatal: kafka_errors.KafkaError | None = None

    def __call__(self, error: Any) -> None:
        if error.fatal():
            self.fatal = translate(error)
            logger.error("librdkafka %s: fatal error: %s", self.what, error.str())
        elif error.code() == RdKafkaError._ALL_BROKERS_DOWN:
            logger.warning("librdkafka %s: %s", self.what, error.str())
        else:  # retried by librdkafka, and logged by it already (a connection dropped, ...)
            logger.debug("librdkafka %s: %s", self.what, error.str())

    def check(self) -> None:
        """Raise the fatal error, if librdkafka reported one: the handle is useless after it."""
        if self.fatal is not None:
            raise self.fatal


class Handle:
    """An adapter owning a librdkafka handle (``_rd``) and its ``_problems``: in a forked child
    the handle is abandoned, never touched nor freed (see the module), and any use raises."""

    _rd: Any
    _problems: Problems
    _abandoned: bool = False

    def abandon(self) -> None:
        """In a forked child: never touch nor free the parent's handle."""
        if not self._abandoned:
            self._abandoned = True
            keep_forever(self._rd)

    def _check(self) -> None:
        if self._abandoned:
            what = self._problems.what
            raise kafka_errors.KafkaError(f"librdkafka {what} used in a forked child")
        self._problems.check()


def handle_config(problems: Problems) -> dict[str, Any]:
    """The properties every handle gets: its log lines through Python logging on the masked
    ``LIBRDKAFKA_LOGGER`` (never stderr), and its errors to ``problems``."""
    lines = logging.getLogger(LIBRDKAFKA_LOGGER)
    guard = guard_kafka_logs()  # the process's secrets, as kafka-python's loggers mask them
    with _LOCK:
        if guard not in lines.filters:
            lines.addFilter(guard)
    return {"logger": lines, "error_cb": problems}


_LOCK = threading.Lock()
_LIVE: weakref.WeakSet[Forkable] = weakref.WeakSet()


def track(adapter: Forkable) -> None:
    """Abandon ``adapter``'s handle in any child forked from now on (see the module)."""
    with _LOCK:
        _LIVE.add(adapter)


def keep_forever(handle: object) -> None:
    """One reference that is never released: the handle is never freed (nor destroyed)."""
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(handle))


def _abandon_all() -> None:
    global _LOCK
    _LOCK = threading.Lock()  # another thread may have held it at the fork
    for adapter in list(_LIVE):
        adapter.abandon()
    _LIVE.clear()


os.register_at_fork(after_in_child=_abandon_all)
