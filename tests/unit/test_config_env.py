"""Settings from the environment: the origin's ``KAFKA_*``/``ALERT_KAFKA_*`` names and
``WORKERS_*`` variables override the config, in that order, and convert their text."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.unit.config_support import SECRET, C, P, base_conf, conf_with, load_error
from workers.config import StartPolicy, load_settings

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
        "WORKERS_KAFKA_AUDIT_LOGS_PRODUCER_LINGER_MS": "7",
    }

    # Act
    settings = load_settings(base_conf(), environ)

    # Assert
    audit = settings.cluster("audit_logs")
    assert audit.bootstrap_servers == ("audit-1:9092", "audit-2:9092")
    assert audit.producer == {"linger_ms": 7, "batch_size": 256 * 1024}  # the default size


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


def test_regression_env_api_version_with_two_parts() -> None:
    # Act
    common = load_settings(base_conf(), {"WORKERS_KAFKA_COMMON_API_VERSION": "2.8"})

    # Assert
    assert common.cluster("common").client["api_version"] == (2, 8)


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
