"""Secrets never reach a log: a filter on the Celery worker's and beat's log handlers masks
URL passwords and the configuration's secrets in every record, message and traceback alike.

kafka-python logs a SASL/PLAIN password at DEBUG (its authentication request), a library's
exception may carry a URL with its password: ``setup(app)`` installs the filter when Celery
has set up logging, so neither shows up whatever the log level.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import signals

from workers.config.masking import mask_text, secrets_in


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


def install(app: Any, logger: logging.Logger | None = None) -> MaskSecrets:
    """Add the filter to every handler of ``logger`` (default: the root logger) once."""
    target = logger or logging.getLogger()
    secrets = secrets_in(app.conf, os.environ)
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
