"""Why ``workers check`` cannot use a cluster: refused SASL, a failed TLS handshake, or nothing
answering. kafka-python ends a failed bootstrap in a bare timeout; the cause is only in its
log records (``Bootstrap connection to ... failed: <exception>``), so the probe reads them.

The probe is a short-lived admin client with a client id of its own: kafka-python 3 logs from
an IO thread named ``kafka-io-<client id>``, kafka-python 2 from the calling thread, so a
cause is matched to its probe by thread, and clusters probed at once never mix causes up.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from workers.config.masking import clip
from workers.ops.context import OpsError
from workers.runtime.logmask import guard_kafka_logs, option_secrets

TLS_PROTOCOLS = ("SSL", "SASL_SSL")


class ClusterUnusable(OpsError):
    """The probe failed; the message says why, ``hint`` names the README troubleshooting entry."""

    def __init__(self, reason: str, hint: str) -> None:
        super().__init__(reason)
        self.hint = hint


class _Causes(logging.Handler):
    """On the ``kafka`` logger while probes run: keeps the exceptions its records carry, per
    watched thread. kafka-python's warnings must be created for that, even when the process
    shows none (the CLI keeps ``kafka`` at CRITICAL by default): while watching, ``kafka`` is
    lowered to WARNING and stops propagating, and this handler passes on to the parent's
    handlers only the records the process would have shown anyway."""

    def __init__(self) -> None:
        super().__init__()
        self._guard = threading.Lock()
        self._watched: dict[str | int, list[BaseException]] = {}
        self._saved: tuple[int, bool, int] = (logging.NOTSET, True, logging.NOTSET)

    def emit(self, record: logging.LogRecord) -> None:
        kafka = logging.getLogger("kafka")
        _, propagate, shown = self._saved
        if propagate and record.levelno >= shown and kafka.parent is not None:
            kafka.parent.callHandlers(record)
        found = self._watched.get(record.threadName or "")
        if found is None:
            found = self._watched.get(record.thread or 0)
            if found is None:
                return
        args = record.args if isinstance(record.args, tuple) else ()
        found.extend(a for a in args if isinstance(a, BaseException))
        if record.exc_info and record.exc_info[1] is not None:
            found.append(record.exc_info[1])

    @contextlib.contextmanager
    def watching(self, *keys: str | int) -> Iterator[list[BaseException]]:
        """The exceptions logged by kafka-python in the threads ``keys`` (names or idents)
        while the block runs, oldest first."""
        found: list[BaseException] = []
        kafka = logging.getLogger("kafka")
        with self._guard:
            if not self._watched:  # the first probe: nobody else changed kafka's logger
                effective = kafka.getEffectiveLevel()
                self._saved = (kafka.level, kafka.propagate, effective)
                kafka.setLevel(min(effective, logging.WARNING))
                kafka.propagate = False
                kafka.addHandler(self)
            self._watched.update(dict.fromkeys(keys, found))
        try:
            yield found
        finally:
            with self._guard:
                for key in keys:
                    self._watched.pop(key, None)
                if not self._watched:
                    kafka.removeHandler(self)
                    kafka.setLevel(self._saved[0])
                    kafka.propagate = self._saved[1]


_CAUSES = _Causes()


def list_topics(options: Mapping[str, Any], timeout: float) -> list[str]:
    """The cluster's topic names, asked by a new admin client built from ``options`` that
    gives up bootstrapping after ``timeout`` seconds (unless configured otherwise). Raises
    ``ClusterUnusable`` naming the cause. Blocks up to about ``timeout``."""
    client_id = f"workers-check-{uuid.uuid4().hex[:12]}"
    built = {"bootstrap_timeout_ms": int(timeout * 1000), **options, "client_id": client_id}
    guard_kafka_logs(option_secrets(built))
    with _CAUSES.watching(f"kafka-io-{client_id}", threading.get_ident()) as causes:
        try:
            admin = KafkaAdminClient(**built)
            try:
                return sorted(admin.list_topics())
            finally:
                admin.close()
        except (KafkaError, OSError) as exc:
            protocol = str(options.get("security_protocol", "PLAINTEXT"))
            raise ClusterUnusable(*cause_of([*causes, exc], protocol, timeout)) from exc
        except (TypeError, ValueError, AssertionError) as exc:
            reason = f"kafka-python refused the options: {type(exc).__name__}: {_text(exc)}"
            raise ClusterUnusable(reason, "settings wrong") from exc


def cause_of(errors: list[BaseException], protocol: str, timeout: float) -> tuple[str, str]:
    """A reason starting with ``authentication failed``, ``TLS failed`` or ``cannot reach any
    bootstrap server (unreachable)``, and its troubleshooting entry, for what a client with
    ``security_protocol`` ``protocol`` met (``errors``: oldest first, the final one last)."""
    if found := [e for e in errors if _refused_sasl(e)]:
        return f"authentication failed: {_text(found[0])}", "authentication"
    if found := [e for e in errors if _tls_error(e)]:
        return f"TLS failed: {_text(found[0])}", "authentication"
    for error in errors:
        text = _text(error)
        closed = _closed(error)
        if protocol in TLS_PROTOCOLS and closed and "Handshake failed" in text:
            why = f"the port closed the TLS handshake ({text}): a plaintext listener?"
            return f"TLS failed: {why}", "authentication"
        if protocol not in TLS_PROTOCOLS and closed:
            why = (
                f"the broker closed the connection at the first request ({text}): a TLS "
                f"listener? (security_protocol is {protocol}; TLS needs SSL or SASL_SSL)"
            )
            return f"TLS failed: {why}", "authentication"
    # The last error kafka-python logged before giving up ("Unable to bootstrap" tells nothing).
    specific = [e for e in errors if "Unable to bootstrap" not in str(e)]
    seen = _text(specific[-1]) if specific else f"no Kafka answer within {timeout:g} s"
    return f"cannot reach any bootstrap server (unreachable): {seen}", "cluster down"


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _refused_sasl(error: BaseException) -> bool:
    names = {type(e).__name__ for e in _chain(error)}
    return any("Sasl" in n or "Authentication" in n for n in names)


def _tls_error(error: BaseException) -> bool:
    if any(isinstance(e, ssl.SSLError) for e in _chain(error)):
        return True
    text = str(error)
    return "[SSL" in text or "certificate verify failed" in text


def _closed(error: BaseException) -> bool:
    if any(isinstance(e, ConnectionResetError | EOFError) for e in _chain(error)):
        return True
    text = str(error).lower()
    return "connection reset" in text or "disconnected" in text or "eof occurred" in text


def _text(error: BaseException) -> str:
    return clip(" ".join((str(error) or type(error).__name__).split()), 300)
