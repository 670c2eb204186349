"""``workers check`` names why a cluster cannot be used: authentication failed, TLS failed, or
unreachable, against real sockets (the fake SASL/TLS broker, a closed port)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cli_support import Cli
from tests.integration.fake_kafka import Certificates, FakeKafka, fake_kafka, make_certificates
from workers.testing import free_port

PASSWORD = "Check-Pw-5rT8qLm2"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Certificates]:
    folder: Path = tmp_path_factory.mktemp("certs")
    return {name: make_certificates(folder, name) for name in ("trusted", "other")}


@pytest.fixture
def plain_broker() -> Iterator[FakeKafka]:
    with fake_kafka(users={"alice": PASSWORD}) as server:
        yield server


@pytest.fixture
def tls_broker(certificates: dict[str, Certificates]) -> Iterator[FakeKafka]:
    tls = certificates["trusted"].server_context()
    with fake_kafka(users={"alice": PASSWORD}, tls=tls) as server:
        yield server


def checked(cli: Cli, bootstrap: str, **client: Any) -> str:
    """The check's line about the cluster (stdout), after asserting the check failed on it."""
    cli.conf["workers_kafka_clusters"] = {"test": {"bootstrap_servers": [bootstrap], **client}}
    result = cli("--timeout", "2", "check")
    line = next(x for x in result.stdout.splitlines() if " cluster test " in x)
    assert result.exit_code == 1 and line.startswith("FAIL"), result.stdout
    assert PASSWORD not in result.stdout + result.stderr
    return line


def sasl(mechanism: str, password: str = PASSWORD, protocol: str = "SASL_PLAINTEXT") -> Any:
    return {"security_protocol": protocol, "sasl_mechanism": mechanism,
            "sasl_plain_username": "alice", "sasl_plain_password": password}  # fmt: skip


def test_the_fake_broker_passes_the_check_with_the_right_password(
    cli: Cli, plain_broker: FakeKafka
) -> None:
    cli.conf["workers_kafka_clusters"] = {
        "test": {"bootstrap_servers": [plain_broker.bootstrap], **sasl("SCRAM-SHA-256")}
    }

    result = cli("--timeout", "2", "check")

    line = next(x for x in result.stdout.splitlines() if " cluster test " in x)
    assert line.startswith("ok") and "SASL_PLAINTEXT, 0 topics" in line, result.stdout
    assert "auth ok SCRAM-SHA-256" in plain_broker.events


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_a_wrong_password_is_an_authentication_failure(
    cli: Cli, plain_broker: FakeKafka, mechanism: str
) -> None:
    line = checked(cli, plain_broker.bootstrap, **sasl(mechanism, "wrong-" + PASSWORD))

    assert "authentication failed: " in line and "Authentication failed" in line, line
    assert f"auth failed {mechanism}" in plain_broker.events


def test_a_mechanism_the_broker_does_not_enable_is_an_authentication_failure(
    cli: Cli,
) -> None:
    with fake_kafka(users={"alice": PASSWORD}, mechanisms=("PLAIN",)) as server:
        line = checked(cli, server.bootstrap, **sasl("SCRAM-SHA-512"))

    assert "authentication failed: " in line and "UnsupportedSaslMechanism" in line, line


def test_a_certificate_of_an_untrusted_ca_is_a_tls_failure(
    cli: Cli, tls_broker: FakeKafka, certificates: dict[str, Certificates]
) -> None:
    client = sasl("PLAIN", protocol="SASL_SSL")

    line = checked(cli, tls_broker.bootstrap, ssl_cafile=str(certificates["other"].ca), **client)

    assert "TLS failed: " in line and "certificate verify failed" in line, line


def test_tls_to_a_plaintext_listener_is_a_tls_failure(
    cli: Cli, plain_broker: FakeKafka, certificates: dict[str, Certificates]
) -> None:
    client = {**sasl("PLAIN", protocol="SASL_SSL"), "ssl_cafile": str(certificates["trusted"].ca)}

    line = checked(cli, plain_broker.bootstrap, **client)

    assert "TLS failed: " in line and "plaintext listener?" in line, line


def test_plaintext_to_a_tls_listener_is_a_tls_failure(cli: Cli, tls_broker: FakeKafka) -> None:
    line = checked(cli, tls_broker.bootstrap, **sasl("PLAIN"))

    assert "TLS failed: " in line and "a TLS listener?" in line, line


def test_a_closed_port_is_unreachable(cli: Cli) -> None:
    line = checked(cli, f"127.0.0.1:{free_port()}")

    assert "cannot reach any bootstrap server (unreachable): " in line, line
    assert "ECONNREFUSED" in line or "refused" in line.lower(), line
