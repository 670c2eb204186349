"""The hand-off on an AMQP broker (RabbitMQ): a batch counts as accepted only once the broker
confirmed it, and the first stage's queue depth is read with a passive ``queue.declare``.

With ``confirm_publish`` (on by default: ``workers.runtime.kombu_amqp``) a publish waits for the
broker's ``basic.ack``. A ``basic.nack``, an unroutable batch (published ``mandatory``: the broker
returns it instead of confirming and dropping it), no confirm within ``CONFIRM_TIMEOUT`` or a
lost connection raises, and the pull hands the batch off again. py-amqp matches a confirm to
the publish it waits for by order alone, so a connection whose publish failed is dropped, never
reused: a confirm that arrived late would be taken for the next batch's.
"""

from __future__ import annotations

import logging
from typing import Any

from amqp.exceptions import AMQPError, MessageNacked
from amqp.exceptions import ChannelError as AmqpChannelError
from celery import Celery, Signature
from kombu.exceptions import KombuError

from workers.exceptions import RecoverableError
from workers.runtime.kombu_amqp import CONFIRM

logger = logging.getLogger(__name__)

# Seconds one publish waits for its confirm, at each of kombu's attempts (a hand-off to a broker
# that stopped answering fails after about 4x this); a confirm that comes later costs a
# duplicate hand-off. And seconds to wait for a pooled connection, or for the queue's depth.
CONFIRM_TIMEOUT = 5.0
AMQP_TIMEOUT = 5.0
# What a failed publish or query raises: kombu's errors, py-amqp's where kombu lets them through
# (it does not wrap ``MessageNacked`` when it gives up), socket errors and timeouts.
BROKER_ERRORS = (KombuError, AMQPError, MessageNacked, OSError)


def publish_options() -> dict[str, Any]:
    """What every publish of a batch adds on an AMQP broker."""
    return {"confirm_timeout": CONFIRM_TIMEOUT, "mandatory": True}


def publish(app: Celery, signature: Signature, **options: Any) -> None:
    """``signature.apply_async(**options)`` on a pooled connection held for it, which is
    dropped after any failure (its confirms and channel are in an unknown state); the pool
    makes a new one. kombu's retries reconnect on their own. Raises what the publish raised, or
    kombu's ``LimitExceeded`` when no pooled connection is free within ``AMQP_TIMEOUT``."""
    connection = app.pool.acquire(block=True, timeout=AMQP_TIMEOUT)
    try:
        signature.apply_async(connection=connection, **options)
    except BaseException:
        connection.collect()  # no I/O: the broker may be the one that hangs
        raise
    finally:
        connection.release()


def depth(app: Celery, queue: str) -> int:
    """Messages ready in ``queue`` (0 when it does not exist). Tried again once on a fresh
    connection after a connection error (a pooled connection may have been closed while it sat
    idle); a connection that failed is dropped. Raises ``RecoverableError`` when the broker
    cannot tell, within ``AMQP_TIMEOUT`` for a pooled connection, Celery's
    ``broker_connection_timeout`` per connection attempt and ``AMQP_TIMEOUT`` per answer."""
    try:
        connection = app.pool.acquire(block=True, timeout=AMQP_TIMEOUT)
    except KombuError as exc:  # LimitExceeded: every pooled connection is in use
        raise RecoverableError(f"cannot read the length of queue {queue!r}: {exc!r}") from exc
    failure: BaseException | None = None
    try:
        for _ in range(2):
            try:
                return _declared_depth(connection, queue)
            except BROKER_ERRORS as exc:
                connection.collect()  # no I/O: the broker may be the one that hangs
                failure = exc
                if isinstance(exc, TimeoutError):  # asking again would double the wait
                    break
    finally:
        connection.release()
    raise RecoverableError(f"cannot read the length of queue {queue!r}: {failure!r}") from failure


def _declared_depth(connection: Any, queue: str) -> int:
    """A passive ``queue.declare`` on a channel of its own: the broker closes the channel (and
    only it) when the queue does not exist."""
    connection.ensure_connection(max_retries=0)  # one attempt, within broker_connection_timeout
    with connection.connection.transport.having_timeout(AMQP_TIMEOUT):
        channel = connection.channel()
        try:
            ok = channel.queue_declare(queue=queue, passive=True)
        except AmqpChannelError:  # NOT_FOUND; the channel is closed already
            return 0
        channel.close()
    return int(ok.message_count)


_warned: set[str] = set()


def warn_unconfirmed(pipeline: str) -> None:
    """Say once per process and pipeline that its hand-offs are not confirmed."""
    if pipeline in _warned:
        return
    _warned.add(pipeline)
    logger.warning(
        "pipeline %s: broker_transport_options sets %s to False: a batch counts as handed "
        "off once written to the AMQP broker's socket, and one the broker drops is handed off "
        "again only when due (redrive_seconds)",
        pipeline, CONFIRM,
    )  # fmt: skip
