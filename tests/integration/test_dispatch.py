"""The Celery hand-off against a real broker, Redis and RabbitMQ: batches land as chains,
backlog is counted (the failures only an AMQP broker reports: ``test_dispatch_amqp.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
from celery import Celery

from tests.integration.brokers import ON_EVERY_BROKER, Broker
from workers.config import PipelineConfig
from workers.pulling.handoff import FUSED_TASK, CeleryDispatcher
from workers.pulling.tickets import HEADER, Ticket, read
from workers.runtime.kombu_amqp import apply_defaults
from workers.state.keys import Space
from workers.state.ledger import Slice

TICKET = Ticket("p", Space("w", "c", "g", "t"), (Slice(0, "b1", 0, 3),), 60_000, 3)

pytestmark = ON_EVERY_BROKER


@pytest.fixture
def broker_app(celery_broker: Broker) -> Iterator[Celery]:
    app = Celery("dispatch-test", set_as_current=False)
    app.conf.update(
        broker_url=celery_broker.url,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
    )
    apply_defaults(app)  # as workers.runtime.setup does: publisher confirms on RabbitMQ
    yield app
    app.close()


def pipeline(
    queue: str, tasks: tuple[str, ...] = ("alarms.parse", "alarms.build")
) -> PipelineConfig:
    return PipelineConfig(name="p", cluster="c", topic="t", group="g", tasks=tasks, queue=queue)


def test_batches_become_json_chains_on_the_queue_and_are_counted(
    broker_app: Celery, celery_broker: Broker
) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    dispatcher = CeleryDispatcher(broker_app, pipeline(queue))
    batch = [{"id": f"c/t/0/{i}", "value": {"n": i}} for i in range(3)]
    empty_before = dispatcher.backlog()

    for _ in range(3):
        dispatcher.hand_off(batch, TICKET)
    waiting = dispatcher.backlog()

    message = celery_broker.peek(queue)
    assert empty_before == 0  # a queue never declared counts as empty
    assert waiting == celery_broker.depth(queue) == 3
    assert message.headers["task"] == "alarms.parse"
    assert message.content_type == "application/json"  # never pickle
    assert message.routing_key == queue
    where = read(message.headers[HEADER])  # the ticket crosses the real broker intact
    assert where is not None and (where.ticket, where.stage, where.stages) == (TICKET, 0, 2)


def test_the_default_queue_is_used_when_the_pipeline_names_none(broker_app: Celery) -> None:
    broker_app.conf.task_default_queue = f"d-{uuid.uuid4().hex[:8]}"
    dispatcher = CeleryDispatcher(broker_app, pipeline(queue=None))

    dispatcher.hand_off([{"id": "c/t/0/0", "value": {}}], TICKET)

    assert dispatcher.queue == broker_app.conf.task_default_queue
    assert dispatcher.backlog() == 1


def test_a_fused_pipeline_hands_off_one_message_per_batch(
    broker_app: Celery, celery_broker: Broker
) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    fused = replace(pipeline(queue), execution="fused")
    dispatcher = CeleryDispatcher(broker_app, fused)

    dispatcher.hand_off([{"id": "c/t/0/0", "value": {}}], TICKET)

    message = celery_broker.peek(queue)
    assert dispatcher.backlog() == celery_broker.depth(queue) == 1
    assert message.headers["task"] == FUSED_TASK
    where = read(message.headers[HEADER])
    assert where is not None and (where.ticket, where.stage, where.stages) == (TICKET, 0, 1)
