"""Publisher confirms on an AMQP Celery broker (RabbitMQ): ``apply_defaults(app)`` turns
kombu's ``confirm_publish`` transport option on unless the app's settings already name it.

With it, a publish waits for the broker's ``basic.ack``; a ``basic.nack`` raises, where without
it the broker's refusals (a full queue, a memory or disk alarm) leave no trace on the sender.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celery import Celery

from workers.exceptions import ConfigError

__all__ = ["AMQP", "CONFIRM", "apply_defaults", "driver", "is_amqp"]

AMQP = "amqp"  # kombu's ``driver_type`` of its py-amqp and librabbitmq transports
CONFIRM = "confirm_publish"


def driver(connection: Any) -> str:
    """The kombu ``driver_type`` of a (not connected) kombu ``Connection``: ``amqp`` for
    ``amqp://``, ``amqps://`` and ``pyamqp://`` URLs, ``redis``, ``memory``, ... Connects to
    nothing."""
    return str(getattr(connection.get_transport_cls(), "driver_type", ""))


def is_amqp(app: Celery) -> bool:
    """Whether ``app``'s broker speaks AMQP 0-9-1. Celery's default broker (no ``broker_url``)
    is ``amqp://guest@localhost//``, so an app without one counts as AMQP."""
    connection = app.connection_for_write()
    try:
        return driver(connection) == AMQP
    finally:
        connection.release()


def apply_defaults(app: Celery) -> None:
    """With an AMQP broker, put ``confirm_publish: True`` into ``broker_transport_options``
    unless they name it. A value of the app's own is kept (``False`` is warned about once per
    process and pipeline, see ``workers.pulling.handoff_amqp``); anything but ``True`` or
    ``False`` raises ``ConfigError``. Call it before the app's first broker connection (the
    connection pool copies the options when it is created); ``setup(app)`` does."""
    options = app.conf.broker_transport_options
    if options is not None and not isinstance(options, Mapping):
        return  # the settings' loader refuses it, naming the key (workers.config)
    if not is_amqp(app):
        return
    options = dict(options or {})
    if CONFIRM not in options:
        app.conf.broker_transport_options = {**options, CONFIRM: True}
    elif not isinstance(options[CONFIRM], bool):
        raise ConfigError(f"broker_transport_options.{CONFIRM}", options[CONFIRM], "True or False")
