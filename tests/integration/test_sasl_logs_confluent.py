"""SASL with ``client_library: confluent``: the cluster's kafka-python options authenticate
librdkafka's clients built by the package (PLAIN and SCRAM, against the fake broker that checks
them as a broker does), a wrong password is refused, and no log line at DEBUG — librdkafka's
own lines included, which go through Python logging — gives the password away."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from kafka import errors as kafka_errors

from tests.integration.fake_kafka import FakeKafka, fake_kafka
from tests.integration.test_sasl_logs import MECHANISMS, PASSWORD, Lines
from workers.config import load_settings
from workers.connections import Connections
from workers.runtime.logmask import KafkaLogGuard

pytest.importorskip("confluent_kafka", reason="confluent-kafka (the [confluent] extra) is absent")

LIBRDKAFKA = "workers.kafka.rdkafka.librdkafka"


@pytest.fixture
def lines() -> Iterator[Lines]:
    root = logging.getLogger()
    saved = root.level
    handler = Lines()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(saved)


@pytest.fixture
def broker() -> Iterator[FakeKafka]:
    with fake_kafka(users={"alice": PASSWORD}) as server:
        yield server


def authenticates(server: FakeKafka, mechanism: str, password: str) -> bool:
    """The cluster's librdkafka producer asks for a topic's partitions: the fake broker knows
    no topic, so an answer at all means it authenticated."""
    conf = {
        "bootstrap_servers": [server.bootstrap], "client_library": "confluent",
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": mechanism,
        "sasl_plain_username": "alice", "sasl_plain_password": password,
        "request_timeout_ms": 3000,
    }  # fmt: skip
    connections = Connections(load_settings({"workers_kafka_clusters": {"alert": conf}}, {}))
    try:
        connections.producer("alert").partitions_for("alarms")
    except kafka_errors.UnknownTopicOrPartitionError:
        return True
    except kafka_errors.KafkaError:
        return False
    finally:
        connections.close()
    raise AssertionError("the fake broker has no topic")


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("right", [True, False], ids=["authenticated", "wrong-password"])
def test_librdkafka_authenticates_with_the_clusters_options_and_logs_no_secret(
    lines: Lines, broker: FakeKafka, mechanism: str, right: bool
) -> None:
    password = PASSWORD if right else PASSWORD + "-wrong"

    authenticated = authenticates(broker, mechanism, password)

    assert authenticated is right, broker.events
    assert f"auth {'ok' if right else 'failed'} {mechanism}" in broker.events
    assert lines.leaks() == [], lines.leaks()[:3]
    if not right:  # librdkafka said so, through Python logging, guarded
        assert any(LIBRDKAFKA in line and "SASL authentication" in line for line in lines.lines)
        logger = logging.getLogger(LIBRDKAFKA)
        assert any(isinstance(f, KafkaLogGuard) for f in logger.filters)
