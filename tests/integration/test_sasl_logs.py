"""No SASL secret in any log line at DEBUG: real kafka-python clients built by the package run
real PLAIN and SCRAM handshakes against the fake broker, every record captured at the root.
The same handshake without the guard leaks, so these tests would catch a regression."""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from tests.integration.fake_kafka import FakeKafka, fake_kafka
from workers.config import load_settings
from workers.connections import Connections
from workers.exceptions import RecoverableError
from workers.runtime.logmask import KafkaLogGuard, guard_kafka_logs

PASSWORD = "Leak-Canary-7Hq2xW9p"
MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
# What would give a password away: itself, base64 of it, a SCRAM client proof, raw SASL bytes.
TELLS = [
    re.compile(re.escape(PASSWORD)),
    re.compile(re.escape(base64.b64encode(PASSWORD.encode()).decode())),
    re.compile(r",p=[A-Za-z0-9+/]{20,}"),
    re.compile(r"auth_bytes=b'"),
]


class Lines(logging.Handler):
    """Every record, formatted as a handler would write it (traceback included)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []
        self.names: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.names.add(record.name)

    def leaks(self) -> list[str]:
        return [line for line in self.lines if any(t.search(line) for t in TELLS)]


@pytest.fixture
def lines() -> Iterator[Lines]:
    root, kafka = logging.getLogger(), logging.getLogger("kafka")
    saved = (root.level, kafka.level, kafka.propagate)
    handler = Lines()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    kafka.setLevel(logging.DEBUG)
    kafka.propagate = True
    yield handler
    root.removeHandler(handler)
    root.setLevel(saved[0])
    kafka.setLevel(saved[1])
    kafka.propagate = saved[2]


@pytest.fixture
def broker() -> Iterator[FakeKafka]:
    with fake_kafka(users={"alice": PASSWORD}) as server:
        yield server


def options(server: FakeKafka, mechanism: str, password: str) -> dict[str, Any]:
    return {"bootstrap_servers": [server.bootstrap], "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": mechanism, "sasl_plain_username": "alice",
            "sasl_plain_password": password, "bootstrap_timeout_ms": 1500}  # fmt: skip


def through_the_package(server: FakeKafka, mechanism: str, password: str) -> bool:
    """An admin client from the connection cache lists topics; whether it authenticated."""
    conf = options(server, mechanism, password)
    settings = load_settings({"workers_kafka_clusters": {"alert": conf}}, environ={})
    connections = Connections(settings)
    try:
        connections.admin("alert").list_topics()
        return True
    except (RecoverableError, KafkaError):
        return False
    finally:
        connections.close()


def unguarded(server: FakeKafka, mechanism: str, password: str) -> None:
    """The same handshake by kafka-python alone, the guard taken off every kafka logger."""
    for name in ["kafka", *logging.Logger.manager.loggerDict]:
        logger = logging.getLogger(name)
        if name.startswith("kafka"):
            for f in [f for f in logger.filters if isinstance(f, KafkaLogGuard)]:
                logger.removeFilter(f)
    try:
        KafkaAdminClient(**options(server, mechanism, password)).close()
    except KafkaError:
        pass
    finally:
        guard_kafka_logs()


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("right", [True, False], ids=["authenticated", "wrong-password"])
def test_no_sasl_secret_reaches_a_debug_log_and_without_the_guard_it_would(
    lines: Lines, broker: FakeKafka, mechanism: str, right: bool
) -> None:
    # Arrange
    password = PASSWORD if right else PASSWORD + "-wrong"

    # Act: guarded, through the package; then the same without the guard
    authenticated = through_the_package(broker, mechanism, password)
    guarded, guarded_lines = lines.leaks(), list(lines.lines)
    emitting = {n for n in lines.names if n.startswith("kafka")}
    del lines.lines[:]
    unguarded(broker, mechanism, password)

    # Assert
    assert authenticated is right, broker.events
    assert f"auth {'ok' if right else 'failed'} {mechanism}" in broker.events
    assert any("<SaslAuthenticateRequest" in x for x in guarded_lines)  # logged, hidden
    assert guarded == [], guarded[:3]
    guards = {n: any(isinstance(f, KafkaLogGuard) for f in logging.getLogger(n).filters)
              for n in emitting}  # fmt: skip
    assert all(guards.values()), guards  # every kafka logger that wrote something is guarded
    leaked = lines.leaks()
    assert len(leaked) >= 3, lines.lines  # the request's repr, its bytes, the config


def test_a_kafka_logger_created_after_the_first_client_is_guarded_by_the_next(
    lines: Lines, broker: FakeKafka
) -> None:
    through_the_package(broker, "PLAIN", PASSWORD)
    late = logging.getLogger("kafka.late_module_for_test")
    assert not any(isinstance(f, KafkaLogGuard) for f in late.filters)

    through_the_package(broker, "PLAIN", PASSWORD)
    sent = f"alice\0alice\0{PASSWORD}".encode()
    late.debug("Send: %r", sent)

    assert any(isinstance(f, KafkaLogGuard) for f in late.filters)
    assert lines.leaks() == [] and f"Send: <{len(sent)} bytes>" in lines.lines[-1]
