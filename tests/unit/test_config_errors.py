"""A bad setting, in the config or the environment, ends in a ``ConfigError`` naming the key,
in one line, with the expected form and no secret (``workers.config.load_settings``)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.config_support import (
    DROP,
    REDIS_URL,
    ROOT,
    SECRET,
    A,
    C,
    P,
    base_conf,
    conf_with,
    load_error,
    minimal_conf,
)

MISSING_FILE = str(ROOT / "tests" / "unit" / "no-such-ca.pem")


def bad(name: str, key: str, *changes: tuple[str, Any], env: dict[str, str] | None = None) -> Any:
    return pytest.param(changes, env or {}, key, id=name)


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
    bad("unknown-pipeline-key", f"{P}.frob", (f"{P}.frob", ["x"])),
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
    # many topics: exactly one of topic, topics and topic_pattern
    bad("topic-and-topics", f"{P}.topics", (f"{P}.topics", ["a", "b"])),
    bad("topic-and-pattern", f"{P}.topic_pattern", (f"{P}.topic_pattern", "a.*")),
    bad(
        "topics-and-pattern",
        f"{P}.topic_pattern",
        (f"{P}.topic", DROP),
        (f"{P}.topics", ["a"]),
        (f"{P}.topic_pattern", "a.*"),
    ),  # fmt: skip
    bad("topics-empty", f"{P}.topics", (f"{P}.topic", DROP), (f"{P}.topics", [])),
    bad("topics-twice", f"{P}.topics[2]", (f"{P}.topic", DROP), (f"{P}.topics", ["a", "b", "a"])),
    bad("topics-not-a-name", f"{P}.topics[1]", (f"{P}.topic", DROP), (f"{P}.topics", ["a", 7])),
    bad("topics-bad-name", f"{P}.topics[0]", (f"{P}.topic", DROP), (f"{P}.topics", ["a b"])),
    bad(
        "pattern-not-a-regex",
        f"{P}.topic_pattern",
        (f"{P}.topic", DROP),
        (f"{P}.topic_pattern", "alarm-("),
    ),  # fmt: skip
    bad("pattern-empty", f"{P}.topic_pattern", (f"{P}.topic", DROP), (f"{P}.topic_pattern", "")),
    bad(
        "pattern-matches-dead-letters",
        f"{P}.dead_letter_topic",
        (f"{P}.topic", DROP),
        (f"{P}.topic_pattern", "alarm.*"),
        (f"{P}.dead_letter_topic", "alarm.dlq"),
    ),  # fmt: skip
    bad(
        "dead-letters-listed",
        f"{P}.dead_letter_topic",
        (f"{P}.topic", DROP),
        (f"{P}.topics", ["a", "b"]),
        (f"{P}.dead_letter_topic", "b"),
    ),  # fmt: skip
    bad("refresh-zero", f"{P}.topics_refresh_seconds", (f"{P}.topics_refresh_seconds", 0)),
    bad("new-topic-start-bad", f"{P}.new_topic_start", (f"{P}.new_topic_start", "soonest")),
    bad("upper-case-pipeline-name", "workers_pipelines.Alarms", ("workers_pipelines.Alarms", {})),
    bad("batch-size-0", f"{P}.batch_size", (f"{P}.batch_size", 0)),
    bad("batch-size-negative", f"{P}.batch_size", (f"{P}.batch_size", -5)),
    bad("batch-size-over-max-records", f"{P}.batch_size", (f"{P}.batch_size", 20_000)),
    bad("interval-milliseconds", f"{P}.interval", (f"{P}.interval", 0.005)),
    bad("concurrency-too-high", f"{P}.concurrency", (f"{P}.concurrency", 257)),
    bad("bad-mode", f"{P}.mode", (f"{P}.mode", "stream")),
    bad("bad-codec", f"{P}.codec", (f"{P}.codec", "xml")),
    bad("bad-execution", f"{P}.execution", (f"{P}.execution", "parallel")),
    bad("linger-zero", f"{P}.batch_linger_seconds", (f"{P}.batch_linger_seconds", 0)),
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
            "expected a URL such as redis://host:6379/0, rediss://, unix://, "
            "redis+sentinel://host:26379/service or redis+cluster://host:6379",
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


# -- known bugs ----------------------------------------------------------------------------------


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
