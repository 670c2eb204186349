"""Secrets never reach a log, in any process the package configures, at any level.

Two filters share one rule (``mask_text``: URL passwords and known secret values become
``***``, in the message and in a traceback alike):

- ``MaskSecrets`` on the log handlers of the Celery worker and beat (``setup(app)`` installs it
  when Celery has set up logging): whoever logs a configured secret, it shows as ``***``.
- ``KafkaLogGuard`` on kafka-python's own loggers, installed by ``guard_kafka_logs()`` before
  the package builds any Kafka client (so a process that only uses ``KafkaQueue`` has it too),
  and by the worker's and beat's logging setup. At DEBUG, kafka-python logs the bytes it sends
  and the repr of every request: the SASL/PLAIN password in clear, SCRAM's proof, OAUTHBEARER
  tokens; and the admin client logs its configuration, passwords included. In kafka-python's
  records the guard replaces SASL authentication messages (``SaslAuthenticateRequest``,
  ``SaslAuthenticateResponse``, the raw ``SaslBytes`` ones) with their name, raw bytes (the
  wire dumps ``Send: ...``/``Recv: ...``, and record keys and values) with their size, and the
  secret options of a logged configuration with ``***``. It decides by what a record carries,
  not by the logger's level, so no logging configuration (``-l DEBUG``, a ``dictConfig``) lets
  them through: a logger filter runs on every record its logger creates, whatever handler
  later writes it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from celery import signals

from workers.config.kafka_options import SECRET_OPTIONS
from workers.config.masking import mask_text, secrets_in
from workers.config.model import mask_options

# Names of the kafka-python classes whose repr carries SASL credentials or their proofs
# (kafka-python 2.2 and 3.x; versioned classes of 2.2 end in ``_v0``, ``_v1``...).
_SASL_MESSAGES = ("SaslAuthenticateRequest", "SaslAuthenticateResponse", "SaslBytes")


class MaskSecrets(logging.Filter):
    """Replaces every URL password and every known secret in a record with ``***``."""

    def __init__(self, secrets: set[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is the formatter's business
            return True
        masked = mask_text(message, self.secrets)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info or record.exc_text:  # another handler may have formatted it
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)  # type: ignore[arg-type]
            record.exc_text = mask_text(text, self.secrets)
        return True


class _Shown:
    """What stands in a record for a value that must not be shown; the same with %s and %r."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__


def _hidden(value: Any) -> Any:
    """``value`` as a kafka-python log record may show it."""
    if isinstance(value, bytes | bytearray):
        return _Shown(f"<{len(value)} bytes>")
    if isinstance(value, memoryview):
        return _Shown(f"<{value.nbytes} bytes>")
    name = type(value).__name__
    if name.startswith(_SASL_MESSAGES):
        return _Shown(f"<{name}: authentication data hidden>")
    if isinstance(value, Mapping) and any(key in SECRET_OPTIONS for key in value):
        return mask_options(value)
    return value


class KafkaLogGuard(MaskSecrets):
    """On kafka-python's loggers: SASL messages, raw bytes and secret options of a record are
    replaced (see the module), then known secrets masked as ``MaskSecrets`` does."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, str):
            record.msg = _hidden(record.msg)
        args = record.args
        if isinstance(args, Mapping):  # logging's form of one mapping argument
            record.args = _hidden(args)
        elif args:
            shown = tuple(_hidden(arg) for arg in args)
            if any(a is not b for a, b in zip(shown, args, strict=True)):
                record.args = shown
        return super().filter(record)


# One guard for the process: the secrets of every client the package built are added to it.
_GUARD = KafkaLogGuard(set())
_LOCK = threading.Lock()


def guard_kafka_logs(secrets: Iterable[str] = ()) -> KafkaLogGuard:
    """Put the guard on every kafka-python logger (once each), and mask ``secrets`` too in
    their records. Cheap and idempotent: called before each Kafka client is built, since
    kafka-python creates its loggers as its modules are imported."""
    with _LOCK:
        # A new set, never a changed one: another thread may be masking with the old one.
        _GUARD.secrets = _GUARD.secrets | {s for s in secrets if isinstance(s, str) and s}
        names = [n for n in list(logging.Logger.manager.loggerDict) if n.startswith("kafka.")]
        for name in ("kafka", *names):
            logger = logging.getLogger(name)
            if _GUARD not in logger.filters:
                logger.addFilter(_GUARD)
    return _GUARD


def option_secrets(options: Mapping[str, Any]) -> set[str]:
    """The secret values among kafka-python ``options`` (passwords; a proxy URL whole)."""
    return {v for k, v in options.items() if k in SECRET_OPTIONS and isinstance(v, str) and v}


def install(app: Any, logger: logging.Logger | None = None) -> MaskSecrets:
    """Add the filter to every handler of ``logger`` (default: the root logger) once, and the
    guard to kafka-python's loggers."""
    target = logger or logging.getLogger()
    secrets = secrets_in(app.conf, os.environ)
    guard_kafka_logs(secrets)
    mask = MaskSecrets(secrets)
    for handler in target.handlers:
        if not any(isinstance(f, MaskSecrets) for f in handler.filters):
            handler.addFilter(mask)
    return mask


def connect(app: Any) -> None:
    """Install the filter whenever Celery sets up the logging of this app's processes."""

    def on_setup(logger: logging.Logger | None = None, **_: Any) -> None:
        install(app, logger)

    signals.after_setup_logger.connect(on_setup, weak=False)
    signals.after_setup_task_logger.connect(on_setup, weak=False)
