"""CeleryDispatcher: the chain built per batch, its queue, and broker errors on hand-off."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery, Signature
from kombu.exceptions import EncodeError, OperationalError

from workers.config import PipelineConfig
from workers.exceptions import RecoverableError
from workers.kafka.codecs import fast_json
from workers.pulling.handoff import (
    FAST_JSON,
    FUSED_TASK,
    PUBLISH_RETRY,
    CeleryDispatcher,
    Unencodable,
    summary,
    unencodable,
)
from workers.pulling.tickets import HEADER, Ticket, read
from workers.state.keys import Space
from workers.state.ledger import Slice

TASKS = ("alarms.parse", "alarms.build", "alarms.publish")
BATCH = [{"id": "common/events/0/0", "value": {"n": 0}}, {"id": "common/events/0/1", "value": {}}]
TICKET = Ticket("alarms", Space("w", "common", "g1", "events"), (Slice(0, "b1", 0, 2),), 60_000, 3)


def headers(stages: int) -> list[dict[str, Any]]:
    return [TICKET.header(i, stages) for i in range(stages)]


def pipeline(tasks: tuple[str, ...] = TASKS, queue: str | None = None) -> PipelineConfig:
    return PipelineConfig(
        name="alarms", cluster="common", topic="events", group="g1", tasks=tasks, queue=queue
    )


@pytest.fixture
def routed() -> str:
    """A queue name no other test uses (the memory transport is shared by the process)."""
    return f"alarms-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def app(routed: str) -> Iterator[Celery]:
    app = Celery("t", set_as_current=False)
    app.conf.update(
        broker_url="memory://",  # in-process: nothing here may open a socket
        task_always_eager=False,
        task_default_queue="default-q",
        task_routes={"alarms.parse": {"queue": routed}},
    )
    yield app
    app.close()


# -- the chain ----------------------------------------------------------------------------------


def test_chain_gives_the_batch_to_the_first_task_only(app: Celery) -> None:
    dispatcher = CeleryDispatcher(app, pipeline())

    sig = dispatcher.signature(BATCH, TICKET)

    assert [t.task for t in sig.tasks] == list(TASKS)
    assert [t.args for t in sig.tasks] == [(BATCH,), (), ()]
    assert [t.kwargs for t in sig.tasks] == [{}, {}, {}]
    assert [t.options for t in sig.tasks] == [{"headers": h} for h in headers(3)]
    assert sig.tasks[0].args[0] is not BATCH  # a copy: later changes to the batch do not leak


def test_single_task_pipeline_is_a_plain_signature(app: Celery) -> None:
    dispatcher = CeleryDispatcher(app, pipeline(tasks=("alarms.parse",)))

    sig = dispatcher.signature(BATCH, TICKET)

    assert type(sig) is Signature
    assert (sig.task, sig.args, sig.options) == (
        "alarms.parse",
        (BATCH,),
        {"headers": headers(1)[0]},
    )


def test_pipeline_queue_is_set_on_every_task(app: Celery) -> None:
    dispatcher = CeleryDispatcher(app, pipeline(queue="fast-lane"))

    sig = dispatcher.signature(BATCH, TICKET)

    assert dispatcher.queue == "fast-lane"
    assert [t.options for t in sig.tasks] == [
        {"queue": "fast-lane", "headers": h} for h in headers(3)
    ]


def test_queue_is_taken_from_the_apps_routes(app: Celery, routed: str) -> None:
    dispatcher = CeleryDispatcher(app, pipeline())

    assert dispatcher.queue == routed


def test_unrouted_first_task_uses_the_default_queue(app: Celery) -> None:
    dispatcher = CeleryDispatcher(app, pipeline(tasks=("alarms.build", "alarms.publish")))

    assert dispatcher.queue == "default-q"


def test_building_a_signature_does_not_connect(app: Celery) -> None:
    dispatcher = CeleryDispatcher(app, pipeline())

    dispatcher.signature(BATCH, TICKET)

    assert app._pool is None  # no broker connection pool was ever created


# -- hand-off -----------------------------------------------------------------------------------


@pytest.mark.parametrize("tasks", [TASKS, ("alarms.parse",)])
def test_hand_off_publishes_with_the_retry_policy(
    app: Celery, monkeypatch: pytest.MonkeyPatch, tasks: tuple[str, ...]
) -> None:
    dispatcher = CeleryDispatcher(app, pipeline(tasks=tasks))
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def apply_async(self: Signature, *args: Any, **options: Any) -> None:
        first = self.tasks[0] if hasattr(self, "tasks") else self
        calls.append((first.task, first.args, options))

    monkeypatch.setattr(type(dispatcher.signature([], TICKET)), "apply_async", apply_async)

    dispatcher.hand_off(BATCH, TICKET)

    fast = {"serializer": FAST_JSON} if fast_json is not None else {}
    options = {"retry": True, "retry_policy": PUBLISH_RETRY, "argsrepr": summary(BATCH), **fast}
    assert calls == [("alarms.parse", (BATCH,), options)]
    assert summary(BATCH) == "([<2 messages: common/events/0/0 .. common/events/0/1>],)"


@pytest.mark.parametrize("tasks", [TASKS, ("alarms.parse",)])
@pytest.mark.parametrize(
    "error", [OperationalError("connection refused"), ConnectionResetError(104, "reset by peer")]
)
def test_broker_errors_become_recoverable(
    app: Celery, monkeypatch: pytest.MonkeyPatch, tasks: tuple[str, ...], error: Exception
) -> None:
    dispatcher = CeleryDispatcher(app, pipeline(tasks=tasks))

    def apply_async(self: Signature, *args: Any, **options: Any) -> None:
        raise error

    monkeypatch.setattr(type(dispatcher.signature([], TICKET)), "apply_async", apply_async)

    with pytest.raises(RecoverableError) as failure:
        dispatcher.hand_off(BATCH, TICKET)

    assert str(failure.value) == (
        f"pipeline 'alarms': the Celery broker did not accept a batch of 2 records: {error!r}"
    )
    assert failure.value.__cause__ is error


@pytest.mark.parametrize(
    "error", [EncodeError(TypeError("not JSON")), TypeError("cannot serialize"), RecursionError()]
)
def test_a_batch_that_cannot_be_encoded_is_no_broker_failure(
    app: Celery, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    dispatcher = CeleryDispatcher(app, pipeline())

    def apply_async(self: Signature, *args: Any, **options: Any) -> None:
        raise error

    monkeypatch.setattr(type(dispatcher.signature([], TICKET)), "apply_async", apply_async)

    with pytest.raises(Unencodable) as failure:
        dispatcher.hand_off(BATCH, TICKET)

    assert not isinstance(failure.value, RecoverableError)  # retrying would fail the same way
    assert str(failure.value).startswith("pipeline 'alarms': a batch of 2 records cannot be")


def test_other_errors_are_not_disguised(app: Celery, monkeypatch: pytest.MonkeyPatch) -> None:
    dispatcher = CeleryDispatcher(app, pipeline())

    def apply_async(self: Signature, *args: Any, **options: Any) -> None:
        raise AttributeError("a bug")

    monkeypatch.setattr(type(dispatcher.signature([], TICKET)), "apply_async", apply_async)

    with pytest.raises(AttributeError, match="a bug"):
        dispatcher.hand_off(BATCH, TICKET)


def deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"n": 1}, None),
        ({"s": "\ud800"}, None),  # kombu's JSON writes it as an escape: it travels
        ({"b": b"bytes"}, None),  # kombu's JSON writes bytes as text
        ({"set": {1}}, "TypeError"),
        (deep(3000), "RecursionError"),
    ],
)
def test_unencodable_names_why_one_message_cannot_travel(value: Any, expected: str | None) -> None:
    found = unencodable({"id": "c/t/0/0", "value": value})

    assert (found is None) if expected is None else (expected in (found or ""))


# -- on the in-process memory transport ---------------------------------------------------------


def test_hand_off_publishes_one_json_message_per_batch_and_backlog_counts_them(
    app: Celery, routed: str
) -> None:
    dispatcher = CeleryDispatcher(app, pipeline())
    before = dispatcher.backlog()  # the queue was never declared: empty

    dispatcher.hand_off(BATCH, TICKET)
    dispatcher.hand_off(BATCH[:1], TICKET)

    assert before == 0
    assert dispatcher.backlog() == 2
    with app.connection_for_read() as conn, conn.SimpleQueue(routed) as queue:
        message = queue.get(timeout=1)
        message.ack()
    args, kwargs, embed = message.decode()
    assert message.content_type == "application/json"
    assert message.headers["task"] == "alarms.parse"
    assert (args, kwargs) == ([BATCH], {})
    assert [link["task"] for link in embed["chain"]] == ["alarms.publish", "alarms.build"]
    # Every stage carries the ticket with its own position: first counts, last finishes.
    where = read(message.headers[HEADER])
    links = [read(link["options"]["headers"][HEADER]) for link in embed["chain"]]
    assert (
        where is not None and where.ticket == TICKET and (where.first, where.last) == (True, False)
    )
    assert [(x.stage, x.last) for x in links if x is not None] == [(2, True), (1, False)]


def test_a_fused_pipeline_hands_off_one_message_running_every_stage(
    app: Celery, routed: str
) -> None:
    fused = PipelineConfig(
        name="alarms", cluster="common", topic="events", group="g1", tasks=TASKS,
        execution="fused",
    )  # fmt: skip

    def body(batch: Any) -> Any:
        return batch

    for i, name in enumerate(TASKS):  # registered here, with limits of their own
        app.task(name=name, shared=False, soft_time_limit=10 + i, time_limit=20 + i)(body)

    sig = CeleryDispatcher(app, fused).signature(BATCH, TICKET)

    assert sig.task == FUSED_TASK
    assert (sig.args, sig.kwargs) == ((BATCH,), {"stages": list(TASKS)})
    where = read(sig.options["headers"][HEADER])
    assert where is not None and where.first and where.last  # starts and finishes the batch
    assert sig.options["queue"] == routed  # where the first stage is routed
    assert (sig.options["soft_time_limit"], sig.options["time_limit"]) == (33.0, 63.0)


def test_a_fused_pipeline_whose_stages_are_not_known_here_gets_the_workers_limits(
    app: Celery,
) -> None:
    fused = PipelineConfig(
        name="alarms", cluster="common", topic="events", group="g1", tasks=TASKS,
        execution="fused",
    )  # fmt: skip

    sig = CeleryDispatcher(app, fused).signature(BATCH, TICKET)

    assert "time_limit" not in sig.options and "soft_time_limit" not in sig.options
