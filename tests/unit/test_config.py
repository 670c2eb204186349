"""Unit tests of ``workers.config``: validation errors, environment overrides, secrets, defaults."""

from __future__ import annotations

import copy
import importlib.util
import os
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from workers.config import (
    ClusterConfig,
    PipelineConfig,
    RedisConfig,
    StartPolicy,
    load_settings,
    mask_options,
    mask_url,
    settings_for,
)
from workers.config.kafka_options import FETCH_MAX_BYTES
from workers.exceptions import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SECRET = "hunter2-secret"
REDIS_URL = f"redis://:{SECRET}@redis.example:6379/0"
MISSING_FILE = str(ROOT / "tests" / "unit" / "no-such-ca.pem")
DROP = object()
# Variables the loader reads; removed from os.environ in tests that go through settings_for().
ENV_PREFIXES = ("WORKERS_", "KAFKA_", "ALERT_KAFKA_")


def base_conf() -> dict[str, Any]:
    """A valid config with secrets planted in a SASL cluster and in the Redis URL."""
    return {
        "workers_kafka_clusters": {
            "common": {
                "bootstrap_servers": ["kafka-1:9092", "kafka-2:9092"],
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_plain_username": "alice",
                "sasl_plain_password": SECRET,
            },
            "alert": {"bootstrap_servers": ["alert-1:9092"]},
        },
        "workers_redis_url": REDIS_URL,
        "workers_pipelines": {
            "alarms": {
                "cluster": "alert",
                "topic": "alarm-events",
                "tasks": ["workers.alarms.parse", "workers.alarms.build"],
            },
        },
    }


def conf_with(*changes: tuple[str, Any]) -> dict[str, Any]:
    """``base_conf()`` with dotted paths set to values (or removed with ``DROP``)."""
    conf = base_conf()
    for path, value in changes:
        *parents, last = path.split(".")
        target = conf
        for part in parents:
            target = target.setdefault(part, {})
        if value is DROP:
            del target[last]
        else:
            target[last] = value
    return conf


def minimal_conf(**pipeline: Any) -> dict[str, Any]:
    """One plain cluster and one pipeline with only its required keys (plus ``pipeline``)."""
    return {
        "workers_kafka_clusters": {"common": {"bootstrap_servers": ["kafka-1:9092"]}},
        "workers_pipelines": {
            "alarms": {"cluster": "common", "topic": "alarm-events", "tasks": ["a.b"], **pipeline}
        },
    }


def load_error(conf: dict[str, Any], environ: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(conf, environ)
    return info.value


def bad(name: str, key: str, *changes: tuple[str, Any], env: dict[str, str] | None = None) -> Any:
    return pytest.param(changes, env or {}, key, id=name)


C = "workers_kafka_clusters.common"
A = "workers_kafka_clusters.alert"
P = "workers_pipelines.alarms"

BAD_CONFIGS = [
    # unknown and managed keys
    bad("unknown-top-level-key", "workers_frobnicate", ("workers_frobnicate", 1)),
    bad("unknown-cluster-key", f"{C}.frob", (f"{C}.frob", 1)),
    bad("unknown-producer-key", f"{C}.producer.frob", (f"{C}.producer.frob", 1)),
    bad("managed-consumer-group-id", f"{C}.consumer.group_id", (f"{C}.consumer.group_id", "g")),
    bad(
        "managed-consumer-auto-commit",
        f"{C}.consumer.enable_auto_commit",
        (f"{C}.consumer.enable_auto_commit", True),
    ),
    bad(
        "managed-producer-serializer",
        f"{C}.producer.value_serializer",
        (f"{C}.producer.value_serializer", str),
    ),
    bad("unknown-secret-looking-key", f"{C}.password", (f"{C}.password", SECRET)),
    bad("unknown-pipeline-key", f"{P}.topics", (f"{P}.topics", ["x"])),
    # wrong types
    bad("string-for-int", f"{P}.batch_size", (f"{P}.batch_size", "500")),
    bad("string-for-float", f"{C}.reconnect_seconds", (f"{C}.reconnect_seconds", "60")),
    bad("number-for-list", f"{P}.tasks", (f"{P}.tasks", 5)),
    bad("bool-for-int", f"{P}.concurrency", (f"{P}.concurrency", True)),
    bad("list-for-secret", f"{C}.sasl_plain_password", (f"{C}.sasl_plain_password", [SECRET])),
    bad("cluster-not-a-mapping", A, (A, "alert-1:9092")),
    # clusters and bootstrap servers
    bad("no-clusters", "workers_kafka_clusters", ("workers_kafka_clusters", DROP)),
    bad("empty-clusters", "workers_kafka_clusters", ("workers_kafka_clusters", {})),
    bad("missing-bootstrap", f"{A}.bootstrap_servers", (f"{A}.bootstrap_servers", DROP)),
    bad("empty-bootstrap-list", f"{A}.bootstrap_servers", (f"{A}.bootstrap_servers", [])),
    bad("bootstrap-no-port", f"{A}.bootstrap_servers[0]", (f"{A}.bootstrap_servers", ["alert-1"])),
    bad(
        "bootstrap-port-0",
        f"{A}.bootstrap_servers[1]",
        (f"{A}.bootstrap_servers", ["alert-1:9092", "alert-2:0"]),
    ),
    bad(
        "bootstrap-port-70000",
        f"{A}.bootstrap_servers[0]",
        (f"{A}.bootstrap_servers", ["alert-1:70000"]),
    ),
    bad(
        "bootstrap-space-in-list",
        f"{A}.bootstrap_servers[0]",
        (f"{A}.bootstrap_servers", ["alert-1 :9092"]),
    ),
    bad(
        "bootstrap-space-in-string",
        f"{A}.bootstrap_servers[1]",
        (f"{A}.bootstrap_servers", "alert-1:9092, alert 2:9092"),
    ),
    bad("bootstrap-not-a-string", f"{A}.bootstrap_servers[0]", (f"{A}.bootstrap_servers", [9092])),
    bad(
        "upper-case-cluster-name",
        "workers_kafka_clusters.Main",
        ("workers_kafka_clusters.Main", {}),
    ),
    # security
    bad("unknown-sasl-mechanism", f"{C}.sasl_mechanism", (f"{C}.sasl_mechanism", "PLAIN2")),
    bad("unknown-security-protocol", f"{C}.security_protocol", (f"{C}.security_protocol", "TLS")),
    bad("sasl-without-mechanism", f"{C}.sasl_mechanism", (f"{C}.sasl_mechanism", DROP)),
    bad("plain-without-password", f"{C}.sasl_plain_password", (f"{C}.sasl_plain_password", DROP)),
    bad("plain-without-username", f"{C}.sasl_plain_username", (f"{C}.sasl_plain_username", "")),
    bad(
        "mechanism-with-plaintext",
        f"{C}.security_protocol",
        (f"{C}.security_protocol", "PLAINTEXT"),
    ),
    bad("missing-ssl-cafile", f"{C}.ssl_cafile", (f"{C}.ssl_cafile", MISSING_FILE)),
    # kafka-python options
    bad("request-timeout-too-small", f"{C}.request_timeout_ms", (f"{C}.request_timeout_ms", 5)),
    bad("reconnect-below-1s", f"{C}.reconnect_seconds", (f"{C}.reconnect_seconds", 0.5)),
    bad("timeout-zero", f"{C}.timeout", (f"{C}.timeout", 0)),
    bad("bad-api-version", f"{C}.api_version", (f"{C}.api_version", "two")),
    bad("bad-acks", f"{C}.producer.acks", (f"{C}.producer.acks", 2)),
    bad("bad-acks-word", f"{C}.producer.acks", (f"{C}.producer.acks", "some")),
    bad(
        "bad-compression",
        f"{C}.producer.compression_type",
        (f"{C}.producer.compression_type", "brotli"),
    ),
    bad(
        "bad-isolation-level",
        f"{C}.consumer.isolation_level",
        (f"{C}.consumer.isolation_level", "dirty"),
    ),
    bad(
        "max-poll-records-0",
        f"{C}.consumer.max_poll_records",
        (f"{C}.consumer.max_poll_records", 0),
    ),
    # redis and top level
    bad(
        "redis-bad-scheme",
        "workers_redis_url",
        ("workers_redis_url", f"http://:{SECRET}@redis.example:6379/0"),
    ),
    bad(
        "redis-port-out-of-range",
        "workers_redis_url",
        ("workers_redis_url", f"redis://:{SECRET}@redis.example:99999/0"),
    ),
    bad(
        "redis-port-not-numeric",
        "workers_redis_url",
        ("workers_redis_url", f"redis://:{SECRET}@redis.example:port/0"),
    ),
    bad("redis-no-host", "workers_redis_url", ("workers_redis_url", "redis:///0")),
    bad("redis-prefix-space", "workers_redis_key_prefix", ("workers_redis_key_prefix", "my app")),
    bad(
        "redis-socket-timeout", "workers_redis_socket_timeout", ("workers_redis_socket_timeout", 0)
    ),
    bad("offset-ttl-too-short", "workers_offset_ttl_seconds", ("workers_offset_ttl_seconds", 60)),
    bad("bad-default-group", "workers_default_group", ("workers_default_group", "my group")),
    # pipelines
    bad("pipeline-unknown-cluster", f"{P}.cluster", (f"{P}.cluster", "nope")),
    bad("pipeline-missing-topic", f"{P}.topic", (f"{P}.topic", DROP)),
    bad("upper-case-pipeline-name", "workers_pipelines.Alarms", ("workers_pipelines.Alarms", {})),
    bad("batch-size-0", f"{P}.batch_size", (f"{P}.batch_size", 0)),
    bad("batch-size-negative", f"{P}.batch_size", (f"{P}.batch_size", -5)),
    bad("batch-size-over-max-records", f"{P}.batch_size", (f"{P}.batch_size", 20_000)),
    bad("interval-milliseconds", f"{P}.interval", (f"{P}.interval", 0.005)),
    bad("concurrency-too-high", f"{P}.concurrency", (f"{P}.concurrency", 257)),
    bad("bad-mode", f"{P}.mode", (f"{P}.mode", "stream")),
    bad("bad-codec", f"{P}.codec", (f"{P}.codec", "xml")),
    bad("bad-start", f"{P}.start", (f"{P}.start", "yesterday")),
    bad("bad-start-latest-n", f"{P}.start", (f"{P}.start", "latest-x")),
    bad("bad-out-of-range", f"{P}.out_of_range", (f"{P}.out_of_range", "middle")),
    bad("max-bytes-too-small", f"{P}.max_bytes", (f"{P}.max_bytes", 100)),
    bad(
        "lease-ttl-equal-max-seconds",
        f"{P}.lease_ttl_seconds",
        (f"{P}.lease_ttl_seconds", 5),
        (f"{P}.max_seconds", 5),
    ),
    bad(
        "max-runtime-at-default-visibility-timeout",
        f"{P}.max_runtime_seconds",
        (f"{P}.max_runtime_seconds", 3600),
    ),
    bad(
        "max-runtime-over-configured-visibility-timeout",
        f"{P}.max_runtime_seconds",
        ("broker_transport_options", {"visibility_timeout": 120}),
    ),
    bad(
        "dead-letter-equals-topic",
        f"{P}.dead_letter_topic",
        (f"{P}.dead_letter_topic", "alarm-events"),
    ),
    bad("bad-topic-name", f"{P}.topic", (f"{P}.topic", "alarm events")),
    bad("dot-topic-name", f"{P}.topic", (f"{P}.topic", "..")),
    bad(
        "bad-task-name", f"{P}.tasks[1]", (f"{P}.tasks", ["workers.alarms.parse", "workers..build"])
    ),
    bad("empty-tasks", f"{P}.tasks", (f"{P}.tasks", [])),
    bad("bad-group", f"{P}.group", (f"{P}.group", "alarm group")),
    # environment
    bad(
        "env-not-a-number",
        "WORKERS_KAFKA_COMMON_RECONNECT_SECONDS",
        env={"WORKERS_KAFKA_COMMON_RECONNECT_SECONDS": "abc"},
    ),
    bad(
        "env-unknown-cluster-key",
        "WORKERS_KAFKA_COMMON_FROB",
        env={"WORKERS_KAFKA_COMMON_FROB": SECRET},
    ),
    bad(
        "env-unknown-pipeline-key",
        "WORKERS_PIPELINE_ALARMS_FROB",
        env={"WORKERS_PIPELINE_ALARMS_FROB": SECRET},
    ),
    bad(
        "env-bad-bool",
        "WORKERS_KAFKA_COMMON_SSL_CHECK_HOSTNAME",
        env={"WORKERS_KAFKA_COMMON_SSL_CHECK_HOSTNAME": "maybe"},
    ),
    bad(
        "env-float-for-int",
        "WORKERS_PIPELINE_ALARMS_BATCH_SIZE",
        env={"WORKERS_PIPELINE_ALARMS_BATCH_SIZE": "1.5"},
    ),
    bad(
        "env-value-out-of-range",
        f"{P}.interval (from WORKERS_PIPELINE_ALARMS_INTERVAL)",
        env={"WORKERS_PIPELINE_ALARMS_INTERVAL": "0.001"},
    ),
    bad(
        "env-bad-bootstrap-entry",
        f"{C}.bootstrap_servers[1] (from WORKERS_KAFKA_COMMON_BOOTSTRAP_SERVERS)",
        env={"WORKERS_KAFKA_COMMON_BOOTSTRAP_SERVERS": "kafka-1:9092,kafka-2"},
    ),
    bad(
        "env-origin-bad-port",
        f"{C}.bootstrap_servers[0] (from KAFKA_HOST/KAFKA_PORT)",
        env={"KAFKA_HOST": "kafka-1", "KAFKA_PORT": "0"},
    ),
    bad(
        "env-origin-bad-group",
        "workers_default_group (from KAFKA_CONSUMER_GROUP)",
        env={"KAFKA_CONSUMER_GROUP": "my group"},
    ),
    bad(
        "env-bad-task-name",
        f"{P}.tasks[1] (from WORKERS_PIPELINE_ALARMS_TASKS)",
        env={"WORKERS_PIPELINE_ALARMS_TASKS": "workers.ok,not a task"},
    ),
    bad(
        "env-bad-acks",
        f"{C}.producer.acks (from WORKERS_KAFKA_COMMON_PRODUCER_ACKS)",
        env={"WORKERS_KAFKA_COMMON_PRODUCER_ACKS": "2"},
    ),
    bad(
        "env-bad-cluster-name-from-pipeline",
        f"{P}.cluster (from WORKERS_PIPELINE_ALARMS_CLUSTER)",
        env={"WORKERS_PIPELINE_ALARMS_CLUSTER": "nope"},
    ),
]


@pytest.mark.parametrize(("changes", "environ", "key"), BAD_CONFIGS)
def test_bad_config_names_the_key_and_hides_secrets(
    changes: tuple[tuple[str, Any], ...], environ: dict[str, str], key: str
) -> None:
    # Arrange
    conf = conf_with(*changes)

    # Act
    exc = load_error(conf, environ)

    # Assert
    assert exc.key == key
    assert SECRET not in str(exc)
    assert SECRET not in repr(exc)
    assert "\n" not in str(exc)


@pytest.mark.parametrize(
    ("changes", "environ", "message"),
    [
        pytest.param(
            [(f"{P}.batch_size", 0)],
            {},
            f"{P}.batch_size: got 0; expected a value between 1 and 50000",
            id="range",
        ),
        pytest.param(
            [("workers_redis_url", f"http://:{SECRET}@redis.example:6379/0")],
            {},
            "workers_redis_url: got 'http://:***@redis.example:6379/0'; "
            "expected a URL such as redis://host:6379/0, rediss:// or unix://",
            id="redis-url-password-masked",
        ),
        pytest.param(
            [(f"{C}.sasl_plain_password", [SECRET])],
            {},
            f"{C}.sasl_plain_password: got '***'; expected a password",
            id="secret-masked",
        ),
        pytest.param(
            [],
            {"WORKERS_KAFKA_COMMON_FROB": SECRET},
            "WORKERS_KAFKA_COMMON_FROB: got '***'; expected WORKERS_KAFKA_<CLUSTER>_<SETTING> "
            "with a known setting (see the configuration reference)",
            id="unknown-env-var-masked",
        ),
        pytest.param(
            [],
            {"WORKERS_KAFKA_COMMON_RECONNECT_SECONDS": "abc"},
            "WORKERS_KAFKA_COMMON_RECONNECT_SECONDS: got 'abc'; "
            "expected seconds as a number between 1 and 1000000000 (max connection age)",
            id="env-conversion",
        ),
        pytest.param(
            [],
            {"WORKERS_PIPELINE_ALARMS_INTERVAL": "0.001"},
            f"{P}.interval (from WORKERS_PIPELINE_ALARMS_INTERVAL): got 0.001; expected a value "
            "between 0.1 and 86400 (a shorter poll interval only hammers Redis and Kafka)",
            id="env-sourced-check",
        ),
    ],
)
def test_error_message_is_one_line_with_key_masked_value_and_expected_form(
    changes: list[tuple[str, Any]], environ: dict[str, str], message: str
) -> None:
    # Arrange
    conf = conf_with(*changes)

    # Act
    exc = load_error(conf, environ)

    # Assert
    assert str(exc) == message
    assert str(exc).splitlines() == [message]


# -- environment overrides ---------------------------------------------------------------------


def test_kafka_host_with_several_hosts_and_kafka_port() -> None:
    # Arrange
    environ = {"KAFKA_HOST": "k1, k2,k3", "KAFKA_PORT": "9093"}

    # Act
    settings = load_settings(base_conf(), environ)

    # Assert
    assert settings.cluster("common").bootstrap_servers == ("k1:9093", "k2:9093", "k3:9093")
    assert settings.cluster("alert").bootstrap_servers == ("alert-1:9092",)


def test_kafka_host_without_port_defaults_to_9092() -> None:
    # Arrange
    environ = {"KAFKA_HOST": "k1,k2"}

    # Act
    settings = load_settings(base_conf(), environ)

    # Assert
    assert settings.cluster("common").bootstrap_servers == ("k1:9092", "k2:9092")


def test_alert_kafka_host_and_port_set_the_alert_cluster() -> None:
    # Arrange
    environ = {"ALERT_KAFKA_HOST": "a1,a2", "ALERT_KAFKA_PORT": "19092"}

    # Act
    settings = load_settings(base_conf(), environ)

    # Assert
    assert settings.cluster("alert").bootstrap_servers == ("a1:19092", "a2:19092")
    assert settings.cluster("common").bootstrap_servers == ("kafka-1:9092", "kafka-2:9092")


def test_origin_hosts_create_the_clusters_when_the_config_has_none() -> None:
    # Arrange
    conf: dict[str, Any] = {}
    environ = {"KAFKA_HOST": "k1", "ALERT_KAFKA_HOST": "a1"}

    # Act
    settings = load_settings(conf, environ)

    # Assert
    assert sorted(settings.clusters) == ["alert", "common"]
    assert settings.cluster("alert").bootstrap_servers == ("a1:9092",)


def test_kafka_consumer_group_is_the_group_of_pipelines_without_one() -> None:
    # Arrange
    conf = conf_with(
        ("workers_pipelines.audit", {"cluster": "common", "topic": "audit", "tasks": ["a.b"]}),
        ("workers_pipelines.audit.group", "audit-group"),
    )
    environ = {"KAFKA_CONSUMER_GROUP": "origin-group"}

    # Act
    settings = load_settings(conf, environ)

    # Assert
    assert settings.default_group == "origin-group"
    assert settings.pipeline("alarms").group == "origin-group"
    assert settings.pipeline("audit").group == "audit-group"


def test_workers_kafka_cluster_settings_from_env() -> None:
    # Arrange
    environ = {
        "WORKERS_KAFKA_COMMON_BOOTSTRAP_SERVERS": "b1:9092, b2:9093",
        "WORKERS_KAFKA_COMMON_SASL_PLAIN_PASSWORD": "from-env-secret",
        "WORKERS_KAFKA_COMMON_PRODUCER_ACKS": "all",
        "WORKERS_KAFKA_COMMON_CONSUMER_MAX_POLL_RECORDS": "250",
        "WORKERS_KAFKA_COMMON_RECONNECT_SECONDS": "30",
        "WORKERS_KAFKA_COMMON_SSL_CHECK_HOSTNAME": "false",
    }

    # Act
    common = load_settings(base_conf(), environ).cluster("common")

    # Assert
    assert common.bootstrap_servers == ("b1:9092", "b2:9093")
    assert common.client["sasl_plain_password"] == "from-env-secret"
    assert common.client["ssl_check_hostname"] is False
    assert common.producer["acks"] == "all"
    assert common.consumer["max_poll_records"] == 250
    assert common.reconnect_seconds == 30.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("1", True), ("YES", True), ("on", True), ("false", False), ("0", False)],
)
def test_env_booleans(text: str, expected: bool) -> None:
    # Arrange
    environ = {"WORKERS_KAFKA_COMMON_SSL_CHECK_HOSTNAME": text}

    # Act
    common = load_settings(base_conf(), environ).cluster("common")

    # Assert
    assert common.client["ssl_check_hostname"] is expected


@pytest.mark.parametrize(("text", "expected"), [("-1", -1), ("1", 1), ("0", 0), ("ALL", "all")])
def test_env_acks_are_normalised(text: str, expected: Any) -> None:
    # Arrange
    environ = {"WORKERS_KAFKA_COMMON_PRODUCER_ACKS": text}

    # Act
    common = load_settings(base_conf(), environ).cluster("common")

    # Assert
    assert common.producer["acks"] == expected


def test_env_none_for_nullable_settings() -> None:
    # Arrange
    conf = conf_with(
        (f"{P}.group", "configured"),
        (f"{C}.producer.compression_type", "gzip"),
        (f"{P}.max_partitions", 4),
    )
    environ = {
        "WORKERS_PIPELINE_ALARMS_GROUP": "none",
        "WORKERS_PIPELINE_ALARMS_MAX_PARTITIONS": "NULL",
        "WORKERS_KAFKA_COMMON_PRODUCER_COMPRESSION_TYPE": "",
    }

    # Act
    settings = load_settings(conf, environ)

    # Assert
    assert settings.pipeline("alarms").group == "workers"
    assert settings.pipeline("alarms").max_partitions is None
    assert settings.cluster("common").producer["compression_type"] is None


def test_env_passthrough_option_is_converted_by_its_text() -> None:
    # Arrange
    environ = {
        "WORKERS_KAFKA_COMMON_CONSUMER_SESSION_TIMEOUT_MS": "10000",
        "WORKERS_KAFKA_COMMON_ALLOW_AUTO_CREATE_TOPICS": "false",
        "WORKERS_KAFKA_COMMON_PRODUCER_TRANSACTIONAL_ID": "tx-1",
    }

    # Act
    common = load_settings(base_conf(), environ).cluster("common")

    # Assert
    assert common.consumer["session_timeout_ms"] == 10000
    assert common.client["allow_auto_create_topics"] is False
    assert common.producer["transactional_id"] == "tx-1"


@pytest.mark.parametrize("name", ["alert_eu", "alert-eu"])
def test_env_cluster_name_with_underscore_or_dash(name: str) -> None:
    # Arrange
    conf = conf_with(
        (f"workers_kafka_clusters.{name}", {"bootstrap_servers": ["eu-1:9092"]}),
    )
    environ = {"WORKERS_KAFKA_ALERT_EU_TIMEOUT": "2.5", "WORKERS_KAFKA_ALERT_EU_CLIENT_ID": "eu"}

    # Act
    settings = load_settings(conf, environ)

    # Assert
    assert settings.cluster(name).timeout == 2.5
    assert settings.cluster(name).client["client_id"] == "eu"
    assert sorted(settings.clusters) == sorted(["alert", "common", name])


def test_env_defines_a_new_cluster() -> None:
    # Arrange
    environ = {
        "WORKERS_KAFKA_AUDIT_LOGS_BOOTSTRAP_SERVERS": "audit-1:9092,audit-2:9092",
        "WORKERS_KAFKA_AUDIT_LOGS_PRODUCER_LINGER_MS": "5",
    }

    # Act
    settings = load_settings(base_conf(), environ)

    # Assert
    audit = settings.cluster("audit_logs")
    assert audit.bootstrap_servers == ("audit-1:9092", "audit-2:9092")
    assert audit.producer == {"linger_ms": 5}


def test_env_pipeline_settings() -> None:
    # Arrange
    environ = {
        "WORKERS_PIPELINE_ALARMS_BATCH_SIZE": "100",
        "WORKERS_PIPELINE_ALARMS_START": "latest-3",
        "WORKERS_PIPELINE_ALARMS_MAX_SECONDS": "2",
        "WORKERS_PIPELINE_ALARMS_MAX_RUNTIME_SECONDS": "600",
        "WORKERS_PIPELINE_ALARMS_DEAD_LETTER_TOPIC": "alarm-dlq",
    }

    # Act
    alarms = load_settings(base_conf(), environ).pipeline("alarms")

    # Assert
    assert alarms.batch_size == 100
    assert alarms.start == StartPolicy("latest-n", n=3)
    assert alarms.max_seconds == 2.0
    assert alarms.max_runtime_seconds == 600.0
    assert alarms.dead_letter_topic == "alarm-dlq"
    assert alarms.tasks == ("workers.alarms.parse", "workers.alarms.build")


def test_env_defines_a_whole_pipeline() -> None:
    # Arrange
    environ = {
        "WORKERS_PIPELINE_AUDIT_LOG_CLUSTER": "common",
        "WORKERS_PIPELINE_AUDIT_LOG_TOPIC": "audit",
        "WORKERS_PIPELINE_AUDIT_LOG_TASKS": "audit.parse, audit.store",
        "WORKERS_PIPELINE_AUDIT_LOG_MODE": "long_lived",
        "WORKERS_PIPELINE_AUDIT_LOG_INTERVAL": "0.5",
    }

    # Act
    settings = load_settings(base_conf(), environ)

    # Assert
    audit = settings.pipeline("audit_log")
    assert (audit.cluster, audit.topic, audit.mode, audit.interval) == (
        "common",
        "audit",
        "long_lived",
        0.5,
    )
    assert audit.tasks == ("audit.parse", "audit.store")
    assert sorted(settings.pipelines) == ["alarms", "audit_log"]


def test_other_workers_variables_are_ignored() -> None:
    # Arrange
    environ = {"WORKERS_TEST_KAFKA": "127.0.0.1:1", "WORKERS_CELERY_CONFIG": "x", "OTHER": "1"}

    # Act
    settings = load_settings(base_conf(), environ)

    # Assert
    assert settings == load_settings(base_conf(), {})


def test_environ_none_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange
    monkeypatch.setenv("WORKERS_PIPELINE_ALARMS_BATCH_SIZE", "42")

    # Act
    settings = load_settings(base_conf())

    # Assert
    assert settings.pipeline("alarms").batch_size == 42


def test_workers_variable_beats_origin_name_beats_config() -> None:
    # Arrange
    conf = conf_with((f"{C}.bootstrap_servers", ["conf:9092"]))
    origin = {"KAFKA_HOST": "origin"}
    both = {**origin, "WORKERS_KAFKA_COMMON_BOOTSTRAP_SERVERS": "workers:9092"}

    # Act
    from_conf = load_settings(conf, {}).cluster("common")
    from_origin = load_settings(conf, origin).cluster("common")
    from_workers = load_settings(conf, both).cluster("common")

    # Assert
    assert from_conf.bootstrap_servers == ("conf:9092",)
    assert from_origin.bootstrap_servers == ("origin:9092",)
    assert from_workers.bootstrap_servers == ("workers:9092",)


def test_kafka_consumer_group_beats_configured_default_group() -> None:
    # Arrange
    conf = conf_with(("workers_default_group", "from-config"))

    # Act
    settings = load_settings(conf, {"KAFKA_CONSUMER_GROUP": "from-origin"})

    # Assert
    assert settings.default_group == "from-origin"


def test_environment_does_not_change_the_given_config() -> None:
    # Arrange
    conf = base_conf()
    before = copy.deepcopy(conf)

    # Act
    load_settings(conf, {"KAFKA_HOST": "k1", "WORKERS_KAFKA_COMMON_PRODUCER_ACKS": "1"})

    # Assert
    assert conf == before


# -- secrets -----------------------------------------------------------------------------------


class TokenProvider:
    def token(self) -> str:
        return SECRET

    def __repr__(self) -> str:
        return f"TokenProvider({SECRET})"


def secret_conf(tmp_path: Path) -> dict[str, Any]:
    """A SASL_SSL cluster with every secret option set, and files for every ssl path."""
    files = {}
    for name in ("ca", "cert", "key", "crl"):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_text("x")
    return conf_with(
        (f"{C}.security_protocol", "SASL_SSL"),
        (f"{C}.sasl_mechanism", "SCRAM-SHA-512"),
        (f"{C}.ssl_cafile", str(files["ca"])),
        (f"{C}.ssl_certfile", str(files["cert"])),
        (f"{C}.ssl_keyfile", str(files["key"])),
        (f"{C}.ssl_crlfile", str(files["crl"])),
        (f"{C}.ssl_password", SECRET),
        (f"{C}.ssl_check_hostname", False),
        (f"{C}.ssl_ciphers", "ECDHE+AESGCM"),
        (f"{C}.client_id", "workers-test"),
        (f"{C}.producer.acks", "all"),
        (f"{C}.producer.sasl_plain_password", SECRET),
        (f"{C}.consumer.max_poll_records", 100),
        (f"{C}.consumer.client_id", "workers-consumer"),
        (f"{A}.security_protocol", "SASL_SSL"),
        (f"{A}.sasl_mechanism", "OAUTHBEARER"),
        (f"{A}.sasl_oauth_token_provider", TokenProvider()),
    )


def test_reprs_never_show_a_secret(tmp_path: Path) -> None:
    # Arrange
    settings = load_settings(secret_conf(tmp_path), {})

    # Act
    texts = {
        "settings": repr(settings),
        "str": str(settings),
        "common": repr(settings.cluster("common")),
        "alert": repr(settings.cluster("alert")),
        "redis": repr(settings.redis),
    }

    # Assert
    assert {name: SECRET in text for name, text in texts.items()} == dict.fromkeys(texts, False)
    assert "sasl_plain_password': '***'" in texts["common"]
    assert "ssl_password': '***'" in texts["common"]
    assert "sasl_oauth_token_provider': '***'" in texts["alert"]
    assert "redis://:***@redis.example:6379/0" in texts["redis"]


def test_client_options_carry_every_option_as_configured(tmp_path: Path) -> None:
    # Arrange
    conf = secret_conf(tmp_path)
    cluster_conf = conf["workers_kafka_clusters"]["common"]
    configured = {
        k: v
        for k, v in cluster_conf.items()
        if k not in ("bootstrap_servers", "producer", "consumer")
    }
    common = load_settings(conf, {}).cluster("common")

    # Act
    producer = common.producer_options()
    consumer = common.consumer_options()
    admin = common.admin_options()

    # Assert
    servers = {"bootstrap_servers": ["kafka-1:9092", "kafka-2:9092"]}
    assert admin == {**servers, **configured}
    assert producer == {
        **servers,
        **configured,
        "acks": "all",
        "sasl_plain_password": SECRET,
    }
    assert consumer == {
        **servers,
        **configured,
        "enable_auto_commit": False,
        "group_id": None,
        "auto_offset_reset": "none",
        "max_poll_records": 100,
        "client_id": "workers-consumer",
        "fetch_max_bytes": FETCH_MAX_BYTES,
    }


def test_mask_helpers() -> None:
    # Arrange
    options = {"sasl_plain_password": SECRET, "ssl_password": "", "client_id": "c"}

    # Act
    masked = mask_options(options)

    # Assert
    assert masked == {"sasl_plain_password": "***", "ssl_password": "", "client_id": "c"}
    assert mask_url(REDIS_URL) == "redis://:***@redis.example:6379/0"
    assert mask_url(f"rediss://user:{SECRET}@h:6380/1") == "rediss://user:***@h:6380/1"
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"
    assert mask_url(f"redis://:{SECRET}@[::1/0") == "redis://:***@[::1/0"


# -- defaults ----------------------------------------------------------------------------------


def repository_celeryconfig() -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location("celeryconfig", ROOT / "celeryconfig.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {k: v for k, v in vars(module).items() if not k.startswith("_")}


def test_repository_celeryconfig_loads() -> None:
    # Arrange
    conf = repository_celeryconfig()

    # Act
    settings = load_settings(conf, {})

    # Assert
    assert sorted(settings.clusters) == ["alert", "common"]
    assert sorted(settings.pipelines) == ["alarms"]
    alarms = settings.pipeline("alarms")
    assert (alarms.cluster, alarms.topic, alarms.group) == ("alert", "alarm-events", "workers")
    assert alarms.tasks == (
        "workers.alarms.parse",
        "workers.alarms.build",
        "workers.alarms.publish",
    )
    assert settings.redis == RedisConfig(url="redis://127.0.0.1:6379/1")


def test_top_level_and_cluster_defaults() -> None:
    # Arrange
    conf = {"workers_kafka_clusters": {"common": {"bootstrap_servers": "kafka-1:9092"}}}

    # Act
    settings = load_settings(conf, {})

    # Assert
    assert settings.redis == RedisConfig(
        url="redis://127.0.0.1:6379/0", key_prefix="workers", socket_timeout=5.0
    )
    assert settings.redis.offset_ttl_seconds is None
    assert settings.default_group == "workers"
    assert settings.pipelines == {}
    assert settings.cluster("common") == ClusterConfig(
        name="common",
        bootstrap_servers=("kafka-1:9092",),
        reconnect_seconds=60.0,
        timeout=6.0,
        consumer={"fetch_max_bytes": FETCH_MAX_BYTES},  # 2 MiB, not kafka-python's 50 MB
    )
    # No other kafka-python option is added when none is configured: its own defaults apply.
    assert settings.cluster("common").producer_options() == {
        "bootstrap_servers": ["kafka-1:9092"],
        "acks": "all",  # dead letters and alerts must survive a leader change
    }


def test_pipeline_defaults() -> None:
    # Arrange
    conf = minimal_conf()

    # Act
    alarms = load_settings(conf, {}).pipeline("alarms")

    # Assert
    assert alarms == PipelineConfig(
        name="alarms",
        cluster="common",
        topic="alarm-events",
        group="workers",
        tasks=("a.b",),
        batch_size=500,
        mode="beat",
        interval=1.0,
        concurrency=1,
        start=StartPolicy("latest"),
        max_records=10_000,
        max_bytes=16 * 1024 * 1024,
        max_seconds=5.0,
        codec="json",
        dead_letter_topic="alarm-events.dlq",
        out_of_range="earliest",
        lease_ttl_seconds=30.0,
        max_partitions=None,
        max_queue_length=None,
        max_runtime_seconds=300.0,
        queue=None,
    )


def test_pipeline_values_are_kept() -> None:
    # Arrange
    values = {
        "group": "g",
        "batch_size": 50,
        "mode": "long_lived",
        "interval": 2,
        "concurrency": 4,
        "start": "earliest",
        "max_records": 100,
        "max_bytes": 2048,
        "max_seconds": 1,
        "codec": "base64",
        "dead_letter_topic": "dead",
        "out_of_range": "latest",
        "lease_ttl_seconds": 10,
        "max_partitions": 8,
        "max_queue_length": 1000,
        "max_runtime_seconds": 60,
        "queue": "alarms",
    }

    # Act
    alarms = load_settings(minimal_conf(**values), {}).pipeline("alarms")

    # Assert
    kept = {name: getattr(alarms, name) for name in values}
    assert kept == {**values, "start": StartPolicy("earliest")}
    assert isinstance(alarms.interval, float)
    assert isinstance(alarms.lease_ttl_seconds, float)


def test_lookup_of_unknown_cluster_or_pipeline_names_the_known_ones() -> None:
    # Arrange
    settings = load_settings(base_conf(), {})

    # Act
    with pytest.raises(KeyError) as cluster_info:
        settings.cluster("nope")
    with pytest.raises(KeyError) as pipeline_info:
        settings.pipeline("nope")

    # Assert
    assert "['alert', 'common']" in str(cluster_info.value)
    assert "['alarms']" in str(pipeline_info.value)


# -- start policy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "policy", "shown"),
    [
        ("earliest", StartPolicy("earliest"), "earliest"),
        ("latest", StartPolicy("latest"), "latest"),
        ("latest-3", StartPolicy("latest-n", n=3), "latest-3"),
        ("2026-11-24T10:00:00+08:00", StartPolicy("time", at="2026-11-24T10:00:00+08:00"), None),
        ("-1h", StartPolicy("time", at="-1h"), None),
        ("1700000000", StartPolicy("time", at="1700000000"), None),
    ],
)
def test_start_policy_parse(text: str, policy: StartPolicy, shown: str | None) -> None:
    # Act
    parsed = StartPolicy.parse(text)

    # Assert
    assert parsed == policy
    assert str(parsed) == (shown or text)


@pytest.mark.parametrize("text", ["", "Latest", "latest-", "latest-x", "latest+3", "yesterday"])
def test_start_policy_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        StartPolicy.parse(text)


def test_start_policy_from_config_accepts_an_epoch_number() -> None:
    # Arrange
    conf = minimal_conf(start=1_700_000_000)

    # Act
    alarms = load_settings(conf, {}).pipeline("alarms")

    # Assert
    assert alarms.start == StartPolicy("time", at="1700000000")


# -- settings_for --------------------------------------------------------------------------------


def test_settings_for_loads_once_per_app(monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange
    for var in list(os.environ):
        if var.startswith(ENV_PREFIXES):
            monkeypatch.delenv(var)
    app, other = Celery("t"), Celery("t2")
    app.conf.update(minimal_conf())
    other.conf.update(minimal_conf(batch_size=7))

    # Act
    first, second, third = settings_for(app), settings_for(app), settings_for(other)

    # Assert
    assert first is second
    assert third is not first
    assert (first.pipeline("alarms").batch_size, third.pipeline("alarms").batch_size) == (500, 7)


# -- known bugs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("var", "text", "attribute", "expected"),
    [
        ("WORKERS_REDIS_URL", "redis://redis-env:6379/3", "url", "redis://redis-env:6379/3"),
        ("WORKERS_REDIS_KEY_PREFIX", "env-prefix", "key_prefix", "env-prefix"),
        ("WORKERS_REDIS_SOCKET_TIMEOUT", "2.5", "socket_timeout", 2.5),
        ("WORKERS_OFFSET_TTL_SECONDS", "7200", "offset_ttl_seconds", 7200),
    ],
)
def test_regression_top_level_workers_variables_override_redis_settings(
    var: str, text: str, attribute: str, expected: Any
) -> None:
    # Act
    settings = load_settings(base_conf(), {var: text})

    # Assert
    assert getattr(settings.redis, attribute) == expected


def test_regression_workers_default_group_beats_kafka_consumer_group() -> None:
    # Arrange
    environ = {"KAFKA_CONSUMER_GROUP": "from-origin", "WORKERS_DEFAULT_GROUP": "from-workers"}

    # Act
    settings = load_settings(base_conf(), environ)

    # Assert
    assert settings.default_group == "from-workers"


def test_regression_bad_workers_redis_url_is_refused() -> None:
    # Act
    exc = load_error(base_conf(), {"WORKERS_REDIS_URL": f"http://:{SECRET}@h:6379/0"})

    # Assert
    assert exc.key == "workers_redis_url (from WORKERS_REDIS_URL)"
    assert SECRET not in str(exc)


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        pytest.param([("workers_redis_uri", REDIS_URL)], "workers_redis_uri", id="redis-uri-typo"),
        pytest.param(
            [("workers_kafka_cluster", base_conf()["workers_kafka_clusters"])],
            "workers_kafka_cluster",
            id="clusters-typo",
        ),
        pytest.param(
            [(f"{C}.sasl_plain_pasword", SECRET)], f"{C}.sasl_plain_pasword", id="password-typo"
        ),
    ],
)
def test_unknown_key_never_shows_its_value(changes: list[tuple[str, Any]], key: str) -> None:
    # Act
    exc = load_error(conf_with(*changes), {})

    # Assert
    assert exc.key == key
    assert SECRET not in str(exc)


def test_redis_url_of_wrong_type_is_masked() -> None:
    # Act
    exc = load_error(conf_with(("workers_redis_url", REDIS_URL.encode())), {})

    # Assert
    assert exc.key == "workers_redis_url"
    assert SECRET not in str(exc)


@pytest.mark.parametrize(
    ("conf", "environ", "key"),
    [
        pytest.param(minimal_conf(interval=float("nan")), {}, f"{P}.interval", id="config"),
        pytest.param(
            minimal_conf(),
            {"WORKERS_PIPELINE_ALARMS_MAX_SECONDS": "nan"},
            "WORKERS_PIPELINE_ALARMS_MAX_SECONDS",
            id="env",
        ),
    ],
)
def test_regression_nan_is_refused(conf: dict[str, Any], environ: dict[str, str], key: str) -> None:
    # Act
    exc = load_error(conf, environ)

    # Assert
    assert exc.key == key


@pytest.mark.parametrize("value", [9092, None])
def test_regression_bootstrap_servers_of_wrong_type_is_a_config_error(value: Any) -> None:
    # Act
    exc = load_error(conf_with((f"{A}.bootstrap_servers", value)), {})

    # Assert
    assert exc.key == f"{A}.bootstrap_servers"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("workers_kafka_clusters", ["common"]),
        ("workers_kafka_clusters", 5),
        ("workers_pipelines", "alarms"),
    ],
)
def test_regression_top_level_mapping_of_wrong_type_is_a_config_error(key: str, value: Any) -> None:
    # Act
    exc = load_error(conf_with((key, value)), {})

    # Assert
    assert exc.key == key


def test_regression_malformed_redis_url_is_a_config_error() -> None:
    # Act
    exc = load_error(conf_with(("workers_redis_url", f"redis://:{SECRET}@[::1/0")), {})

    # Assert
    assert exc.key == "workers_redis_url"
    assert SECRET not in str(exc)


def test_regression_env_api_version_with_two_parts() -> None:
    # Act
    common = load_settings(base_conf(), {"WORKERS_KAFKA_COMMON_API_VERSION": "2.8"})

    # Assert
    assert common.cluster("common").client["api_version"] == (2, 8)


def test_regression_bad_visibility_timeout_is_a_config_error() -> None:
    # Act
    exc = load_error(conf_with(("broker_transport_options", {"visibility_timeout": "abc"})), {})

    # Assert
    assert exc.key == "broker_transport_options.visibility_timeout"


def test_regression_default_dead_letter_topic_is_checked() -> None:
    # Act
    exc = load_error(minimal_conf(topic="t" * 249), {})

    # Assert
    assert exc.key == f"{P}.dead_letter_topic"


def test_regression_checked_common_option_under_a_role_is_still_checked() -> None:
    # Act
    exc = load_error(conf_with((f"{C}.producer.request_timeout_ms", 5)), {})

    # Assert
    assert exc.key == f"{C}.producer.request_timeout_ms"


class LockedTokenProvider:
    def __init__(self) -> None:
        self._lock = threading.Lock()

    def token(self) -> str:
        return SECRET


@pytest.mark.parametrize(
    ("protocol", "key", "make"),
    [
        pytest.param("SASL_SSL", "sasl_oauth_token_provider", TokenProvider, id="provider"),
        pytest.param("SASL_SSL", "sasl_oauth_token_provider", LockedTokenProvider, id="locked"),
        pytest.param("SSL", "ssl_context", ssl.create_default_context, id="ssl-context"),
    ],
)
def test_regression_object_options_reach_the_clients_as_configured(
    protocol: str, key: str, make: Any
) -> None:
    # Arrange
    value = make()
    conf = conf_with((f"{A}.security_protocol", protocol), (f"{A}.{key}", value))
    if protocol.startswith("SASL_"):
        conf["workers_kafka_clusters"]["alert"]["sasl_mechanism"] = "OAUTHBEARER"

    # Act
    alert = load_settings(conf, {}).cluster("alert")

    # Assert
    assert alert.producer_options()[key] is value
    assert alert.consumer_options()[key] is value


@pytest.mark.parametrize("var", ["WORKERS_REDIS_URLL", "WORKERS_SUPERVISE_INTREVAL", "WORKERS_X"])
def test_an_unknown_top_level_workers_variable_is_refused_by_name(var: str) -> None:
    # Act
    error = load_error(base_conf(), {var: "redis://:secret@elsewhere:6379/1"})

    # Assert
    assert var in str(error)
    assert "known top-level setting" in str(error)
    assert "secret" not in str(error)


@pytest.mark.parametrize(
    "var", ["WORKERS_CELERY_CONFIG", "WORKERS_APP", "WORKERS_TEST_KAFKA", "WORKERS_DEMO_REDIS",
            "WORKERS_BENCH_KAFKA"],
)  # fmt: skip
def test_workers_variables_of_the_command_demo_tests_and_benchmarks_are_not_settings(
    var: str,
) -> None:
    # Act
    settings = load_settings(base_conf(), {var: "anything"})

    # Assert
    assert settings == load_settings(base_conf(), {})
