"""The per-cluster ``client_library`` setting: validated at load (librdkafka must be importable
and every option must have a librdkafka meaning), translated to librdkafka's properties, and
choosing the clients the connection cache builds."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from tests.unit.config_support import DROP, SECRET, C, conf_with, load_error, minimal_conf
from tests.unit.fakes import FakeFactories
from workers.config import load_settings
from workers.config.rdkafka_options import rdkafka_config
from workers.connections import Connections

pytest.importorskip("confluent_kafka", reason="confluent-kafka (the [confluent] extra) is absent")

MC = "workers_kafka_clusters.common"


def confluent(**cluster: Any) -> dict[str, Any]:
    conf = minimal_conf()
    conf["workers_kafka_clusters"]["common"].update({"client_library": "confluent", **cluster})
    return conf


def test_kafka_python_is_the_default_and_confluent_is_taken() -> None:
    default = load_settings(minimal_conf(), environ={}).cluster("common")
    chosen = load_settings(confluent(), environ={}).cluster("common")
    from_env = load_settings(
        minimal_conf(), environ={"WORKERS_KAFKA_COMMON_CLIENT_LIBRARY": "confluent"}
    ).cluster("common")

    assert default.client_library == "kafka-python"
    assert chosen.client_library == from_env.client_library == "confluent"
    assert "client_library" not in chosen.client  # never passed on as a kafka-python option
    assert "client_library='confluent'" in repr(chosen)


def test_an_unknown_library_is_refused() -> None:
    error = load_error(confluent(client_library="librdkafka"), {})

    assert str(error).startswith(f"{MC}.client_library: got 'librdkafka'; expected one of ")


def test_confluent_without_confluent_kafka_installed_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # import now raises ImportError

    error = load_error(confluent(), {})

    assert "\n" not in str(error)
    assert str(error).startswith(f"{MC}.client_library: got 'confluent'; expected")
    assert "pip install 'celery-kafka-workers[confluent]'" in str(error)


@pytest.mark.parametrize(
    ("option", "value", "key"),
    [
        ("sasl_kerberos_domain_name", "example.com", "sasl_kerberos_domain_name"),
        ("consumer", {"max_poll_interval_ms": 1000}, "consumer.max_poll_interval_ms"),
        ("producer", {"linger_ms": 1_000_000}, "producer.linger_ms"),
        ("consumer", {"fetch_max_bytes": 500}, "consumer.fetch_max_bytes"),
        ("producer", {"max_request_size": 100}, "producer.max_request_size"),
    ],
)
def test_options_librdkafka_cannot_honour_are_refused_naming_them(
    option: str, value: Any, key: str
) -> None:
    error = load_error(confluent(**{option: value}), {})

    assert str(error).startswith(f"{MC}.{key}: got ")
    assert "client_library 'confluent'" in str(error)
    # The same options are fine with kafka-python.
    plain = minimal_conf()
    plain["workers_kafka_clusters"]["common"][option] = value
    load_settings(plain, environ={})


@pytest.mark.parametrize("mechanism", ["GSSAPI", "OAUTHBEARER"])
def test_sasl_mechanisms_without_a_librdkafka_provider_are_refused(mechanism: str) -> None:
    conf = conf_with(
        (f"{C}.client_library", "confluent"),
        (f"{C}.sasl_mechanism", mechanism),
        (f"{C}.sasl_plain_password", DROP),
    )

    error = load_error(conf, {})

    assert str(error).startswith(f"{C}.sasl_mechanism: got '{mechanism}'; expected one of PLAIN")


def test_security_options_become_librdkafka_properties_and_stay_secret() -> None:
    conf = conf_with((f"{C}.client_library", "confluent"), (f"{C}.ssl_check_hostname", False))
    cluster = load_settings(conf, environ={}).cluster("common")

    props = rdkafka_config(cluster.consumer_options(), "consumer")

    assert props == {
        "bootstrap.servers": "kafka-1:9092,kafka-2:9092",
        "security.protocol": "sasl_plaintext",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "alice",
        "sasl.password": SECRET,
        "ssl.endpoint.identification.algorithm": "none",
        "fetch.max.bytes": 2 * 1024 * 1024,
        "fetch.wait.max.ms": 100,
        "allow.auto.create.topics": False,  # reading never creates a topic
    }
    assert SECRET not in repr(cluster)
    assert "allow.auto.create.topics" not in rdkafka_config(cluster.producer_options(), "producer")


def test_request_timeout_sets_librdkafka_socket_and_producer_timeouts() -> None:
    options = {"bootstrap_servers": "k:1", "request_timeout_ms": 305_000}

    consumer = rdkafka_config(options, "consumer")
    producer = rdkafka_config(options, "producer")

    assert consumer == {"bootstrap.servers": "k:1", "socket.timeout.ms": 300_000}
    assert producer["request.timeout.ms"] == 305_000


def test_the_cache_builds_librdkafka_clients_for_a_confluent_cluster_only() -> None:
    fakes = FakeFactories()
    built: list[tuple[str, dict[str, Any]]] = []
    factories = fakes.factories()
    factories = type(factories)(
        producer=factories.producer,
        consumer=factories.consumer,
        admin=factories.admin,
        redis=factories.redis,
        rdkafka_producer=lambda **kw: built.append(("producer", kw)) or object(),
        rdkafka_consumer=lambda **kw: built.append(("consumer", kw)) or object(),
    )
    conf = confluent()
    conf["workers_kafka_clusters"]["alert"] = {"bootstrap_servers": ["a:1"]}
    cache = Connections(load_settings(conf, environ={}), factories=factories)

    cache.consumer("common")
    cache.producer("common")
    cache.admin("common")
    cache.consumer("alert")

    assert [kind for kind, _ in built] == ["consumer", "producer"]
    assert built[0][1]["auto_offset_reset"] == "none"  # kafka-python's options, translated later
    assert (fakes.consumer.attempts, fakes.producer.attempts, fakes.admin.attempts) == (1, 0, 1)
