"""Hand-off: one Celery chain of the pipeline's tasks per batch, and the backlog it feeds.

The chain's first task receives the batch (a list of JSON message dicts) as its only argument;
each later task receives what the one before it returned. Every message of the chain carries
the batch's ticket (``workers.pulling.tickets``) in its headers: the first stage counts a start
in the in-flight ledger and the last one finishes the batch, which is what lets offsets move.

Hand-off is the pull's hot path. The message's ``argsrepr`` (the arguments as logs and
monitors show them) is a one-line summary of the batch instead of Celery's ``saferepr`` of it;
and when the app's task serializer is ``json`` and the optional ``orjson`` is installed, the
body is written by orjson (about 10x faster) under the same content type: receivers decode it
with kombu's own JSON decoder, exactly as before.

On an AMQP broker (RabbitMQ) a hand-off counts as accepted only once the broker confirmed it,
and the backlog is read over AMQP, each within a bound (``workers.pulling.handoff_amqp``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from amqp.exceptions import ChannelError as AmqpChannelError
from celery import Celery, Signature, chain
from kombu.exceptions import ChannelError, EncodeError, KombuError
from kombu.serialization import registry as _registry
from kombu.transport.virtual import Channel as VirtualChannel
from kombu.utils import json as kombu_json

from workers.config import PipelineConfig
from workers.exceptions import RecoverableError, WorkersError
from workers.kafka.codecs import Message, fast_json
from workers.metrics.record import OLDEST_HEADER, oldest_ms
from workers.pulling import handoff_amqp
from workers.pulling.handoff_amqp import BROKER_ERRORS
from workers.pulling.tickets import Ticket
from workers.runtime.kombu_amqp import AMQP, CONFIRM, driver

logger = logging.getLogger(__name__)

# kombu retries a failed publish (reconnecting) this often before the pull gives up.
PUBLISH_RETRY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2}

FAST_JSON = "workers-json"
FUSED_TASK = "workers.stages.fused"  # workers.stages.fused.NAME (not imported: no cycle)
registry: Any = _registry  # kombu's serializers (untyped)
_kombu_dumps: Any = kombu_json.dumps


def json_body(data: Any) -> bytes | str:
    """The JSON of a message body: by orjson, or by kombu's encoder where orjson would write
    something else (datetimes, dataclasses, bytes, integers beyond 64 bits, lone surrogates,
    non-string keys: orjson raises ``TypeError`` for those) or nothing. A batch holds only
    JSON types with finite numbers (the codecs make sure), so both give the same JSON value."""
    try:
        body: bytes = fast_json.dumps(data, option=_PASSTHROUGH)
    except TypeError:  # orjson.JSONEncodeError
        text: str = _kombu_dumps(data)
        return text
    return body


# Types orjson writes natively but kombu in its own way go to kombu (through ``TypeError``).
_PASSTHROUGH = 0
if fast_json is not None:
    _PASSTHROUGH = fast_json.OPT_PASSTHROUGH_DATETIME | fast_json.OPT_PASSTHROUGH_DATACLASS


def _register_fast_json() -> bool:
    """Register the encoder under its own name with the content type of ``json``; decoding
    (registered per content type) and the name ``json`` stay kombu's."""
    if fast_json is None:
        return False
    if FAST_JSON not in registry.name_to_type:
        content_type = registry.name_to_type["json"]
        name = registry.type_to_name.get(content_type)
        registry.register(FAST_JSON, json_body, None, content_type, "utf-8")
        if name is not None:
            registry.type_to_name[content_type] = name
    return True


def stage_limit(app: Celery, name: str, kind: str) -> float | None:
    """Stage ``name``'s ``kind`` (``time_limit`` or ``soft_time_limit``): the task's own, else
    the app's ``task_<kind>``; None with neither (also for a task not registered here)."""
    value = getattr(app.tasks.get(name), kind, None) or app.conf[f"task_{kind}"]
    return float(value) if value else None


class Unencodable(WorkersError):
    """A batch could not be serialised for the broker: a message in it is not JSON. Not a
    broker failure: retrying would fail the same way; the messages that fail alone are bad
    records (see ``unencodable``)."""


def unencodable(message: Message) -> str | None:
    """Why one message cannot be a task argument, or None."""
    try:
        json_body([message])
        _kombu_dumps([message])
    except (TypeError, ValueError, RecursionError, UnicodeError) as exc:
        return f"cannot be encoded for the hand-off: {type(exc).__name__}: {exc}"
    return None


def summary(batch: Sequence[Message]) -> str:
    """The batch as logs and monitors show it (``argsrepr``), in place of its full repr."""
    if not batch:
        return "([],)"
    first, last = batch[0].get("id"), batch[-1].get("id")
    return f"([<{len(batch)} messages: {first} .. {last}>],)"


class Dispatcher(Protocol):
    """Where batches go. ``CeleryDispatcher`` in production; unit tests record batches."""

    def hand_off(self, batch: Sequence[Message], ticket: Ticket) -> None:
        """Return once the broker accepted the batch; raise ``RecoverableError`` if it did not,
        ``Unencodable`` if the batch cannot be serialised. The ticket goes with it, to every
        stage."""

    def backlog(self) -> int | None:
        """Messages waiting in the first task's queue; None if it cannot be told."""


class CeleryDispatcher:
    """Publishes each batch as a chain of the pipeline's tasks on ``app``'s broker. With
    ``stamp`` (a worker with metrics), each message also carries the batch's oldest Kafka
    timestamp, for the record age its last stage observes."""

    def __init__(self, app: Celery, pipeline: PipelineConfig, stamp: bool = False) -> None:
        self.app = app
        self.pipeline = pipeline
        self.stamp = stamp
        self._options: dict[str, Any] = {"queue": pipeline.queue} if pipeline.queue else {}
        self.queue = pipeline.queue or self._routed_queue(pipeline.tasks[0])
        self._publish: dict[str, Any] = {"retry": True, "retry_policy": PUBLISH_RETRY}
        if app.conf.task_serializer == "json" and _register_fast_json():
            self._publish["serializer"] = FAST_JSON
        self._fused_limits = self._limits() if pipeline.execution == "fused" else {}
        settings = app.connection_for_write()  # as the pool makes them; it does not connect
        try:
            self.amqp = driver(settings) == AMQP
            confirmed = bool((settings.transport_options or {}).get(CONFIRM))
        finally:
            settings.release()
        if self.amqp:
            self._publish.update(handoff_amqp.publish_options())
            if not confirmed:
                handoff_amqp.warn_unconfirmed(pipeline.name)

    def _routed_queue(self, task: str) -> str:
        queue = self.app.amqp.router.route({}, task)["queue"]
        return str(getattr(queue, "name", queue))

    def signature(self, batch: Sequence[Message], ticket: Ticket) -> Signature:
        """The chain for one batch (messages are plain JSON, never pickled), each stage with
        the ticket and its position in the chain; with ``execution: "fused"``, one message
        of ``workers.stages.fused`` that runs every stage (see that module)."""
        tasks = self.pipeline.tasks
        oldest = oldest_ms(batch) if self.stamp else None
        stamp = {} if oldest is None else {OLDEST_HEADER: oldest}
        if self.pipeline.execution == "fused":
            return self.app.signature(
                FUSED_TASK,
                args=(list(batch),),
                kwargs={"stages": list(tasks)},
                headers={**ticket.header(0, 1), **stamp},
                queue=self.queue,
                **self._fused_limits,
            )
        stages = [
            self.app.signature(
                name, headers={**ticket.header(i, len(tasks)), **stamp}, **self._options
            )
            for i, name in enumerate(tasks)
        ]
        stages[0].args = (list(batch),)
        return stages[0] if len(stages) == 1 else chain(*stages)

    def _limits(self) -> dict[str, float]:
        """A fused batch's time limits: the sums of its stages' (each task's own, else the
        app's ``task_soft_time_limit``/``task_time_limit``); none when a stage has none or
        is not registered here (the worker's defaults apply then)."""
        soft = hard = 0.0
        for name in self.pipeline.tasks:
            one_soft = stage_limit(self.app, name, "soft_time_limit")
            one_hard = stage_limit(self.app, name, "time_limit")
            if name not in self.app.tasks or one_soft is None or one_hard is None:
                return {}
            soft, hard = soft + one_soft, hard + one_hard
        return {"soft_time_limit": soft, "time_limit": hard}

    def hand_off(self, batch: Sequence[Message], ticket: Ticket) -> None:
        try:
            signature = self.signature(batch, ticket)
            if self.amqp:
                handoff_amqp.publish(self.app, signature, argsrepr=summary(batch), **self._publish)
            else:
                signature.apply_async(argsrepr=summary(batch), **self._publish)
        except (EncodeError, TypeError, ValueError, RecursionError, UnicodeError) as exc:
            raise Unencodable(f"pipeline {self.pipeline.name!r}: a batch of {len(batch)} "
                              f"records cannot be encoded: {exc!r}") from exc  # fmt: skip
        except BROKER_ERRORS as exc:
            raise RecoverableError(
                f"pipeline {self.pipeline.name!r}: the Celery broker did not accept a batch of "
                f"{len(batch)} records: {exc!r}"
            ) from exc

    def backlog(self) -> int | None:
        """The number of messages ready in the first task's queue (a queue never declared
        holds none). Raises ``RecoverableError`` when the broker cannot tell: the pull then
        fails and backs off rather than read on past ``max_queue_length`` unchecked (on an
        AMQP broker within a bound: ``handoff_amqp.depth``)."""
        if self.amqp:
            return handoff_amqp.depth(self.app, self.queue)
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
