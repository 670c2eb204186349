"""The Celery hand-off against a real Redis broker: batches land as chains, backlog is counted."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import redis
from celery import Celery

from workers.config import PipelineConfig
from workers.pulling.handoff import CeleryDispatcher
from workers.pulling.tickets import HEADER, Ticket, read
from workers.state.keys import Space
from workers.state.ledger import Slice

TICKET = Ticket("p", Space("w", "c", "g", "t"), (Slice(0, "b1", 0, 3),), 60_000, 3)


@pytest.fixture
def broker_app(redis_url: str) -> Iterator[Celery]:
    app = Celery("dispatch-test", set_as_current=False)
    app.conf.update(
        broker_url=redis_url.rsplit("/", 1)[0] + "/2",
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
    )
    yield app
    app.close()


def pipeline(
    queue: str, tasks: tuple[str, ...] = ("alarms.parse", "alarms.build")
) -> PipelineConfig:
    return PipelineConfig(name="p", cluster="c", topic="t", group="g", tasks=tasks, queue=queue)


def test_batches_become_json_chains_on_the_queue_and_are_counted(
    broker_app: Celery, redis_url: str
) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    dispatcher = CeleryDispatcher(broker_app, pipeline(queue))
    batch = [{"id": f"c/t/0/{i}", "value": {"n": i}} for i in range(3)]
    empty_before = dispatcher.backlog()

    for _ in range(3):
        dispatcher.hand_off(batch, TICKET)
    waiting = dispatcher.backlog()

    raw = redis.Redis.from_url(broker_app.conf.broker_url).lindex(queue, 0)
    assert raw is not None
    message = json.loads(raw)
    assert empty_before == 0  # a queue never declared counts as empty
    assert waiting == 3
    assert message["headers"]["task"] == "alarms.parse"
    assert message["content-type"] == "application/json"  # never pickle
    assert message["properties"]["delivery_info"]["routing_key"] == queue
    where = read(message["headers"][HEADER])  # the ticket crosses the real broker intact
    assert where is not None and (where.ticket, where.stage, where.stages) == (TICKET, 0, 2)


def test_the_default_queue_is_used_when_the_pipeline_names_none(broker_app: Celery) -> None:
    broker_app.conf.task_default_queue = f"d-{uuid.uuid4().hex[:8]}"
    dispatcher = CeleryDispatcher(broker_app, pipeline(queue=None))

    dispatcher.hand_off([{"id": "c/t/0/0", "value": {}}], TICKET)

    assert dispatcher.queue == broker_app.conf.task_default_queue
    assert dispatcher.backlog() == 1
