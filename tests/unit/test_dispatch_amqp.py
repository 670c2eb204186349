"""An AMQP Celery broker (RabbitMQ), without one: publisher confirms on by default
(``workers.runtime.kombu_amqp``), the hand-off's publish options and what it does with a
connection whose publish failed, and a pull whose queue depth cannot be read. Nothing here
connects: the real broker's answers are in ``tests/integration/test_dispatch_amqp.py``."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest
from amqp.exceptions import ChannelError as AmqpChannelError
from amqp.exceptions import MessageNacked
from celery import Celery, Signature
from kombu import Connection
from kombu.exceptions import OperationalError

from tests.unit.fakes import RecordingDispatcher
from tests.unit.pulling_world import World, pipeline
from workers.config import PipelineConfig
from workers.exceptions import ConfigError, RecoverableError
from workers.pulling import handoff_amqp
from workers.pulling.handoff import CeleryDispatcher
from workers.pulling.handoff_amqp import CONFIRM_TIMEOUT
from workers.pulling.tickets import Ticket
from workers.runtime.kombu_amqp import apply_defaults, is_amqp
from workers.runtime.setup import setup
from workers.state.keys import Space
from workers.state.ledger import Slice

AMQP_URL = "amqp://guest:guest@127.0.0.1:1//"  # nothing listens: nothing may connect
BATCH = [{"id": "common/events/0/0", "value": {"n": 0}}]
TICKET = Ticket("alarms", Space("w", "common", "g1", "events"), (Slice(0, "b1", 0, 1),), 60_000, 1)


def make_app(**conf: Any) -> Celery:
    app = Celery("t", set_as_current=False)
    app.conf.update(conf)
    return app


@pytest.fixture
def amqp_app() -> Iterator[Celery]:
    app = make_app(broker_url=AMQP_URL)
    apply_defaults(app)
    yield app
    app.close()


def dispatcher_for(app: Celery, name: str = "alarms") -> CeleryDispatcher:
    config = PipelineConfig(
        name=name, cluster="common", topic="events", group="g1", tasks=("a.b",), queue="q"
    )
    return CeleryDispatcher(app, config)


# -- confirm_publish by default -----------------------------------------------------------------


@pytest.mark.parametrize(
    "url", [AMQP_URL, "pyamqp://127.0.0.1:1//", "amqps://127.0.0.1:1//", None]
)  # Celery's default broker (no URL) is amqp://guest@localhost//
def test_an_amqp_broker_gets_publisher_confirms(url: str | None) -> None:
    app = make_app(broker_url=url)

    apply_defaults(app)

    assert is_amqp(app)
    assert app.conf.broker_transport_options == {"confirm_publish": True}
    assert app.pool.connection.transport_options["confirm_publish"] is True  # what publishes


def test_the_apps_other_transport_options_are_kept_and_not_mutated() -> None:
    mine = {"visibility_timeout": 3600, "max_retries": 2}
    app = make_app(broker_url=AMQP_URL, broker_transport_options=mine)

    apply_defaults(app)

    assert app.conf.broker_transport_options == {**mine, "confirm_publish": True}
    assert mine == {"visibility_timeout": 3600, "max_retries": 2}


@pytest.mark.parametrize("value", [True, False])
def test_a_confirm_publish_of_the_apps_own_is_kept(value: bool) -> None:
    app = make_app(broker_url=AMQP_URL, broker_transport_options={"confirm_publish": value})

    apply_defaults(app)

    assert app.conf.broker_transport_options == {"confirm_publish": value}


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_a_confirm_publish_that_is_no_boolean_is_refused_naming_the_key(value: Any) -> None:
    app = make_app(broker_url=AMQP_URL, broker_transport_options={"confirm_publish": value})

    with pytest.raises(ConfigError) as refused:
        apply_defaults(app)

    assert str(refused.value) == (
        f"broker_transport_options.confirm_publish: got {value!r}; expected True or False"
    )


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "memory://"])
def test_other_brokers_are_left_alone(url: str) -> None:
    app = make_app(broker_url=url, broker_transport_options={"visibility_timeout": 60})

    apply_defaults(app)

    assert not is_amqp(app)
    assert app.conf.broker_transport_options == {"visibility_timeout": 60}


def test_transport_options_that_are_no_mapping_are_left_to_the_settings_loader() -> None:
    app = make_app(broker_url=AMQP_URL, broker_transport_options=["confirm_publish"])

    apply_defaults(app)

    assert app.conf.broker_transport_options == ["confirm_publish"]


def test_setup_turns_confirms_on_when_the_app_is_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in list(os.environ):
        if var.startswith(("WORKERS_", "KAFKA_", "ALERT_KAFKA_")):
            monkeypatch.delenv(var)
    app = Celery("t", set_as_current=False)
    app.config_from_object(
        type("Config", (), {
            "broker_url": AMQP_URL,
            "workers_kafka_clusters": {"c": {"bootstrap_servers": ["127.0.0.1:9092"]}},
        })
    )  # fmt: skip

    setup(app)

    assert app.conf.broker_transport_options == {"confirm_publish": True}


# -- the hand-off on an AMQP broker -------------------------------------------------------------


class Publishes:
    """Stands in for ``Signature.apply_async`` (``patch``): records the options of every
    publish and raises ``error``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, error: BaseException | None = None):
        self.error = error
        self.options: list[dict[str, Any]] = []

        def apply_async(signature: Signature, *args: Any, **options: Any) -> None:
            self.options.append(options)
            if self.error is not None:
                raise self.error

        monkeypatch.setattr(Signature, "apply_async", apply_async)


@pytest.fixture
def collected(monkeypatch: pytest.MonkeyPatch) -> list[Connection]:
    """The kombu connections dropped with ``collect()``."""
    dropped: list[Connection] = []
    original = Connection.collect

    def collect(self: Connection, *args: Any, **kwargs: Any) -> None:
        dropped.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(Connection, "collect", collect)
    return dropped


def test_an_amqp_hand_off_waits_for_a_bounded_confirm_of_a_mandatory_publish(
    amqp_app: Celery, monkeypatch: pytest.MonkeyPatch, collected: list[Connection]
) -> None:
    dispatcher = dispatcher_for(amqp_app)
    publishes = Publishes(monkeypatch)

    dispatcher.hand_off(BATCH, TICKET)

    [options] = publishes.options
    assert options["confirm_timeout"] == CONFIRM_TIMEOUT
    assert options["mandatory"] is True  # an unroutable batch comes back instead of vanishing
    assert isinstance(options["connection"], Connection)  # held for it, from the app's pool
    assert options["connection"].transport_options["confirm_publish"] is True
    assert collected == []  # a connection that published fine is kept


@pytest.mark.parametrize(
    "error",
    [
        MessageNacked(),  # kombu lets py-amqp's nack through when it does not retry
        OperationalError("Basic.nack"),
        AmqpChannelError(312, "NO_ROUTE", (60, 50), "Basic.return"),
        TimeoutError("timed out"),  # no confirm in time
        ConnectionResetError(104, "reset by peer"),
    ],
)
def test_a_failed_amqp_publish_fails_the_hand_off_and_its_connection_is_dropped(
    amqp_app: Celery,
    monkeypatch: pytest.MonkeyPatch,
    collected: list[Connection],
    error: BaseException,
) -> None:
    dispatcher = dispatcher_for(amqp_app)
    publishes = Publishes(monkeypatch, error)

    with pytest.raises(RecoverableError) as failure:
        dispatcher.hand_off(BATCH, TICKET)

    assert failure.value.__cause__ is error
    # A late confirm on that connection would be taken for the next batch's: it is not reused.
    assert collected == [publishes.options[0]["connection"]]


def test_a_redis_hand_off_is_published_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(broker_url="redis://127.0.0.1:1/0")
    apply_defaults(app)
    dispatcher = dispatcher_for(app)
    publishes = Publishes(monkeypatch)

    dispatcher.hand_off(BATCH, TICKET)

    assert not dispatcher.amqp
    assert {"connection", "confirm_timeout", "mandatory"}.isdisjoint(publishes.options[0])


def test_confirms_turned_off_warn_once_per_process_and_pipeline(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(handoff_amqp, "_warned", set())
    app = make_app(broker_url=AMQP_URL, broker_transport_options={"confirm_publish": False})
    apply_defaults(app)

    with caplog.at_level(logging.WARNING, logger="workers.pulling.handoff_amqp"):
        for name in ("alarms", "alarms", "audit"):
            dispatcher_for(app, name)

    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert warnings[0].startswith(
        "pipeline alarms: broker_transport_options sets confirm_publish to False: a batch counts "
        "as handed off once written to the AMQP broker's socket"
    )


# -- a queue depth that cannot be read ----------------------------------------------------------


class UnreadableBacklog(RecordingDispatcher):
    """Its queue's depth cannot be read after the first hand-off, once."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.failed = False

    def backlog(self) -> int | None:
        if self.attempts == 1 and not self.failed:
            self.failed = True
            raise RecoverableError("cannot read the length of queue 'q': TimeoutError()")
        return 0


def test_a_backlog_that_cannot_be_read_fails_the_pull_and_loses_nothing(world: World) -> None:
    world.fill(0, 10)
    dispatcher = UnreadableBacklog(ledger=world.ledger)
    config = pipeline(batch_size=2, max_queue_length=100)

    with pytest.raises(RecoverableError, match="cannot read the length of queue"):
        world.puller(config, dispatcher=dispatcher).cycle()
    handed_off_before = len(dispatcher.delivered)
    world.puller(config, dispatcher=dispatcher).cycle()

    assert handed_off_before == 2  # the pull stopped at the first unreadable depth
    assert sorted(dispatcher.delivered) == sorted(set(dispatcher.delivered))  # none twice
    assert len(dispatcher.delivered) == 10
    assert world.stored()[0] == 10
