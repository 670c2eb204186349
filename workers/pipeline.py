"""Hand-off: one Celery chain of the pipeline's tasks per batch, and the backlog it feeds.

The chain's first task receives the batch (a list of JSON message dicts) as its only argument;
each later task receives what the one before it returned. A batch counts as handed off when
the Celery broker accepted the message (``apply_async`` returned); only then may offsets move.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from amqp.exceptions import ChannelError as AmqpChannelError
from celery import Celery, Signature, chain
from kombu.exceptions import ChannelError, KombuError
from kombu.transport.virtual import Channel as VirtualChannel

from workers.codecs import Message
from workers.config import PipelineConfig
from workers.exceptions import RecoverableError

logger = logging.getLogger(__name__)

# kombu retries a failed publish (reconnecting) this often before the pull gives up.
PUBLISH_RETRY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2}


class Dispatcher(Protocol):
    """Where batches go. ``CeleryDispatcher`` in production; unit tests record batches."""

    def hand_off(self, batch: Sequence[Message]) -> None:
        """Return once the batch is accepted; raise ``RecoverableError`` if it was not."""

    def backlog(self) -> int | None:
        """Messages waiting in the first task's queue; None if it cannot be told."""


class CeleryDispatcher:
    """Publishes each batch as a chain of the pipeline's tasks on ``app``'s broker."""

    def __init__(self, app: Celery, pipeline: PipelineConfig) -> None:
        self.app = app
        self.pipeline = pipeline
        self._options: dict[str, Any] = {"queue": pipeline.queue} if pipeline.queue else {}
        self.queue = pipeline.queue or self._routed_queue(pipeline.tasks[0])

    def _routed_queue(self, task: str) -> str:
        queue = self.app.amqp.router.route({}, task)["queue"]
        return str(getattr(queue, "name", queue))

    def signature(self, batch: Sequence[Message]) -> Signature:
        """The chain for one batch (messages are plain JSON, never pickled)."""
        first, *rest = self.pipeline.tasks
        head = self.app.signature(first, args=(list(batch),), **self._options)
        if not rest:
            return head
        return chain(head, *(self.app.signature(name, **self._options) for name in rest))

    def hand_off(self, batch: Sequence[Message]) -> None:
        try:
            self.signature(batch).apply_async(retry=True, retry_policy=PUBLISH_RETRY)
        except (KombuError, OSError) as exc:
            raise RecoverableError(
                f"pipeline {self.pipeline.name!r}: the Celery broker did not accept a batch of "
                f"{len(batch)} records: {exc!r}"
            ) from exc

    def backlog(self) -> int | None:
        # A pooled connection: no new TCP connection per check.
        with self.app.pool.acquire(block=True) as conn:
            try:
                ok = conn.default_channel.queue_declare(queue=self.queue, passive=True)
                return int(ok.message_count)
            except (ChannelError, AmqpChannelError):  # a queue never declared is empty
                if not isinstance(conn.default_channel, VirtualChannel):
                    conn.close()  # AMQP closed the channel; reconnect on next use
                return 0
            except (KombuError, OSError) as exc:
                raise RecoverableError(
                    f"cannot read the length of queue {self.queue!r}: {exc!r}"
                ) from exc
