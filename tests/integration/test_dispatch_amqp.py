"""The hand-off and the backlog on a real RabbitMQ: a batch counts as handed off only once the
broker confirmed it. A nack (a full queue that rejects publishes), an unroutable batch, a
broker that stops answering: each fails the hand-off (the ledger hands the batch off again),
within a bound, and the next hand-off goes through on a fresh connection. The queue's depth is
read the same way, and an unreadable depth fails the pull (see ``CeleryDispatcher.backlog``).
Quorum queues (replicated) are confirmed and counted like classic ones."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from amqp.exceptions import MessageNacked
from celery import Celery
from kombu import Connection, Queue

from tests.integration.brokers import Broker
from tests.integration.stall_proxy import StallProxy
from workers.config import PipelineConfig
from workers.exceptions import RecoverableError
from workers.pulling import handoff_amqp
from workers.pulling.handoff import CeleryDispatcher
from workers.pulling.tickets import Ticket
from workers.runtime.kombu_amqp import apply_defaults
from workers.state.keys import Space
from workers.state.ledger import Slice

TICKET = Ticket("p", Space("w", "c", "g", "t"), (Slice(0, "b1", 0, 1),), 60_000, 1)
HANG = 60.0  # seconds after which a call counts as hung (each bound below is a few seconds)

pytestmark = pytest.mark.parametrize("celery_broker", ["rabbitmq"], indirect=True)


def batch(n: int) -> list[dict[str, Any]]:
    return [{"id": f"c/t/0/{n}", "value": {"n": n}}]


@pytest.fixture
def queue() -> str:
    return f"q-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_app() -> Iterator[Callable[..., Celery]]:
    """Celery apps set up as ``workers.runtime.setup`` sets them (confirms on), closed at the
    end; keyword arguments are settings."""
    apps: list[Celery] = []

    def make(**conf: Any) -> Celery:
        app = Celery("dispatch-amqp", set_as_current=False)
        app.conf.update(task_serializer="json", accept_content=["json"], **conf)
        apply_defaults(app)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


def dispatcher(app: Celery, queue: str) -> CeleryDispatcher:
    config = PipelineConfig(name="p", cluster="c", topic="t", group="g", tasks=("a.b", "c.d"),
                            queue=queue)  # fmt: skip
    return CeleryDispatcher(app, config)


def bounded(call: Callable[[], Any]) -> Any:
    """``call()``'s result or exception, failing the test if it has not returned in ``HANG``
    seconds (a hang, not a slow answer)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG)
    assert not thread.is_alive(), f"still waiting after {HANG:g} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def test_a_batch_the_broker_nacks_fails_its_hand_off(
    make_app: Callable[..., Celery], celery_broker: Broker, queue: str
) -> None:
    # A queue that holds one message and rejects what comes next: RabbitMQ nacks it.
    full = {"x-max-length": 1, "x-overflow": "reject-publish"}
    app = make_app(broker_url=celery_broker.url,
                   task_queues=[Queue(queue, routing_key=queue, queue_arguments=full)])  # fmt: skip
    hand_off = dispatcher(app, queue)

    hand_off.hand_off(batch(0), TICKET)
    with pytest.raises(RecoverableError) as refused:
        hand_off.hand_off(batch(1), TICKET)
    celery_broker.purge(queue)
    hand_off.hand_off(batch(2), TICKET)

    assert isinstance(refused.value.__cause__.__cause__, MessageNacked)  # kombu wraps it
    assert "the Celery broker did not accept a batch of 1 records" in str(refused.value)
    assert celery_broker.depth(queue) == 1
    assert celery_broker.peek(queue).headers["argsrepr"] == "([<1 messages: c/t/0/2 .. c/t/0/2>],)"


def test_a_batch_no_queue_would_receive_fails_its_hand_off(
    make_app: Callable[..., Celery], celery_broker: Broker, queue: str
) -> None:
    app = make_app(broker_url=celery_broker.url)
    hand_off = dispatcher(app, queue)
    hand_off.hand_off(batch(0), TICKET)  # declares the queue (once per connection)
    with app.connection_for_write() as other:
        other.default_channel.queue_delete(queue)  # an operator deletes it

    with pytest.raises(RecoverableError, match="NO_ROUTE"):
        hand_off.hand_off(batch(1), TICKET)  # without `mandatory` the broker drops it, acked
    hand_off.hand_off(batch(2), TICKET)  # a fresh connection declares the queue again

    assert celery_broker.depth(queue) == 1
    assert celery_broker.peek(queue).headers["argsrepr"] == "([<1 messages: c/t/0/2 .. c/t/0/2>],)"


def test_a_broker_that_stops_answering_fails_the_hand_off_and_the_backlog_within_a_bound(
    make_app: Callable[..., Celery],
    celery_broker: Broker,
    queue: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(handoff_amqp, "CONFIRM_TIMEOUT", 1.0)
    monkeypatch.setattr(handoff_amqp, "AMQP_TIMEOUT", 1.0)
    direct = Connection(celery_broker.url)
    with StallProxy((direct.hostname, direct.port)) as proxy:
        url = direct.clone(hostname="127.0.0.1", port=proxy.port).as_uri(include_password=True)
        hand_off = dispatcher(make_app(broker_url=url, broker_connection_timeout=1), queue)
        hand_off.hand_off(batch(0), TICKET)
        waiting = hand_off.backlog()

        proxy.stall()  # the publish is written; no confirm comes back
        with pytest.raises(RecoverableError) as unconfirmed:
            bounded(lambda: hand_off.hand_off(batch(1), TICKET))
        proxy.resume()  # drops what the stalled connection held: batch 1 never arrives
        assert hand_off.backlog() == waiting  # the pooled connection works again
        proxy.stall()  # now on an established connection of the backlog's
        with pytest.raises(RecoverableError) as unknown:
            bounded(hand_off.backlog)
        proxy.resume()
        hand_off.hand_off(batch(2), TICKET)
        after = hand_off.backlog()

    assert waiting == 1
    assert "the Celery broker did not accept a batch of 1 records" in str(unconfirmed.value)
    assert str(unknown.value).startswith(f"cannot read the length of queue {queue!r}: Timeout")
    assert after == celery_broker.depth(queue) == 2  # batches 0 and 2


def test_a_queue_never_declared_counts_as_empty_and_the_connection_stays_usable(
    make_app: Callable[..., Celery], celery_broker: Broker, queue: str
) -> None:
    hand_off = dispatcher(make_app(broker_url=celery_broker.url, broker_pool_limit=1), queue)

    before = [hand_off.backlog(), hand_off.backlog()]  # the broker closes a channel each time
    hand_off.hand_off(batch(0), TICKET)  # on the one pooled connection

    assert before == [0, 0]
    assert hand_off.backlog() == celery_broker.depth(queue) == 1


def test_confirms_turned_off_warn_and_hand_offs_still_go_through(
    make_app: Callable[..., Celery],
    celery_broker: Broker,
    queue: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(handoff_amqp, "_warned", set())
    app = make_app(broker_url=celery_broker.url,
                   broker_transport_options={"confirm_publish": False})  # fmt: skip

    with caplog.at_level(logging.WARNING, logger="workers.pulling.handoff_amqp"):
        hand_off = dispatcher(app, queue)
        hand_off.hand_off(batch(0), TICKET)

    assert app.pool.connection.transport_options["confirm_publish"] is False
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert hand_off.backlog() == 1


def test_a_quorum_queue_confirms_and_counts_like_a_classic_one(
    make_app: Callable[..., Celery], celery_broker: Broker, queue: str
) -> None:
    # A pipeline's `queue` is one Celery creates when missing: its type is the second setting.
    quorum = {"task_default_queue_type": "quorum", "task_create_missing_queue_type": "quorum"}
    hand_off = dispatcher(make_app(broker_url=celery_broker.url, **quorum), queue)

    for n in range(3):
        hand_off.hand_off(batch(n), TICKET)

    assert hand_off.backlog() == celery_broker.depth(queue) == 3
    classic = {"durable": True, "auto_delete": False, "arguments": {"x-queue-type": "classic"}}
    with (
        Connection(celery_broker.url) as other,
        pytest.raises(Exception, match="inequivalent arg 'x-queue-type'"),
    ):
        other.default_channel.queue_declare(queue, **classic)  # it is a quorum queue
