"""Hostile setting values, from the config module and from the environment: each ends in one
exact one-line ``ConfigError`` naming the key, the value (masked, capped) and the expected form.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.config_support import minimal_conf
from workers.config import load_settings
from workers.exceptions import ConfigError

SECRET = "hunter2-secret"
P = "workers_pipelines.alarms"
C = "workers_kafka_clusters.common"
HUGE = 10**400
# How a value too long to echo is shown: its first 200 characters, an ellipsis, its length.
BIG = "1" + "0" * 199 + "… (401 characters)"
START = (
    "earliest, latest, latest-N (N up to 2^63-1), or a time from 1970 to 9999 "
    "(ISO 8601, epoch seconds or milliseconds, or relative such as -1h)"
)
TEXT = "(at most 4096 characters, no control characters)"
TOPIC = "a Kafka topic name: 1-249 of [A-Za-z0-9._-], not '.' or '..'"
NAME = "a name of lower-case letters, digits, '_' or '-' (max 63)"
HOSTPORT = "'host:port' with a port between 1 and 65535"
REDIS = (
    "a URL such as redis://host:6379/0, rediss://, unix://, "
    "redis+sentinel://host:26379/service or redis+cluster://host:6379"
)
SASL = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"}


minimal = minimal_conf


def top(**settings: Any) -> dict[str, Any]:
    return {**minimal(), **settings}


def cluster(**options: Any) -> dict[str, Any]:
    conf = minimal()
    conf["workers_kafka_clusters"]["common"].update(options)
    return conf


def names(pipelines: dict[Any, Any]) -> dict[str, Any]:
    return {**minimal(), "workers_pipelines": pipelines}


def case(name: str, conf: dict[str, Any], env: dict[str, str], message: str) -> Any:
    return pytest.param(conf, env, message, id=name)


def cut(text: str) -> str:
    """How ``shown`` writes a string longer than 200 characters."""
    return f"{text[:200]!r}… ({len(text)} characters)"


CONFIG_MODULE = [
    # numbers: huge, negative huge, NaN, infinity, booleans, other scripts' digits
    case("interval-10**400", minimal(interval=HUGE), {}, f"{P}.interval: got {BIG}; expected "
         "a value between 0.1 and 86400 (a shorter poll interval only hammers Redis and Kafka)"),
    case("interval--10**400", minimal(interval=-HUGE), {}, f"{P}.interval: got -1{'0' * 198}… "
         "(402 characters); expected a value between 0.1 and 86400 (a shorter poll interval only "
         "hammers Redis and Kafka)"),
    case("interval-nan", minimal(interval=float("nan")), {}, f"{P}.interval: got nan; expected "
         "a value between 0.1 and 86400 (a shorter poll interval only hammers Redis and Kafka)"),
    case("interval-inf", minimal(interval=float("inf")), {}, f"{P}.interval: got inf; expected "
         "a value between 0.1 and 86400 (a shorter poll interval only hammers Redis and Kafka)"),
    case("interval-bool", minimal(interval=True), {},
         f"{P}.interval: got True; expected seconds as a number between 0.1 and 86400"),
    case("batch-size-10**400", minimal(batch_size=HUGE), {},
         f"{P}.batch_size: got {BIG}; expected a value between 1 and 50000"),
    case("batch-size-float", minimal(batch_size=5.0), {},
         f"{P}.batch_size: got 5.0; expected an integer between 1 and 50000"),
    case("batch-size-unicode-digits", minimal(batch_size="٣"), {},
         f"{P}.batch_size: got '٣'; expected an integer between 1 and 50000"),
    case("max-partitions-beyond-int32", minimal(max_partitions=2**31), {},
         f"{P}.max_partitions: got 2147483648; expected a value between 1 and 2147483647"),
    case("max-queue-length-10**400", minimal(max_queue_length=HUGE), {},
         f"{P}.max_queue_length: got {BIG}; expected a value between 1 and 2147483647"),
    case("redrive-nan", minimal(redrive_seconds=float("nan")), {},
         f"{P}.redrive_seconds: got nan; expected a value between 1 and 86400"),
    case("offset-ttl-10**400", top(workers_offset_ttl_seconds=HUGE), {},
         f"workers_offset_ttl_seconds: got {BIG}; expected a value between 3600 and 2147483647 "
         "(shorter lets live offsets vanish)"),
    case("dedupe-ttl-10**400", top(workers_alarm_dedupe_ttl_seconds=HUGE), {},
         f"workers_alarm_dedupe_ttl_seconds: got {BIG}; expected a value between 60 and 2592000"),
    case("quiet-inf", top(workers_alarm_quiet_seconds=float("inf")), {},
         "workers_alarm_quiet_seconds: got inf; expected a value between 10 and 2592000"),
    case("reconnect-10**400", cluster(reconnect_seconds=HUGE), {},
         f"{C}.reconnect_seconds: got {BIG}; expected a value between 1 and 1000000000 "
         "(reconnecting faster than 1 s only churns connections)"),
    case("request-timeout-10**400", cluster(request_timeout_ms=HUGE), {},
         f"{C}.request_timeout_ms: got {BIG}; expected a value between 1000 and 2147483647"),
    case("request-timeout-bool", cluster(request_timeout_ms=True), {},
         f"{C}.request_timeout_ms: got True; expected milliseconds as an integer between 1000 "
         "and 2147483647"),
    case("linger-beyond-int32", cluster(producer={"linger_ms": 2**31}), {},
         f"{C}.producer.linger_ms: got 2147483648; expected a value between 0 and 2147483647"),
    case("acks-10**400", cluster(producer={"acks": HUGE}), {},
         f"{C}.producer.acks: got {BIG}; expected one of 0, 1, -1, 'all'"),
    case("acks-bool", cluster(producer={"acks": True}), {},
         f"{C}.producer.acks: got True; expected one of 0, 1, -1, 'all'"),
    case("api-version-inf", cluster(api_version=[float("inf"), 8]), {},
         f"{C}.api_version: got [inf, 8]; expected a broker version such as '2.8.0' or [2, 8, 0]"),
    case("api-version-unicode", cluster(api_version="٢.٨.٠"), {},
         f"{C}.api_version: got '٢.٨.٠'; expected a broker version such as '2.8.0' or [2, 8, 0]"),
    case("passed-through-10**400", cluster(producer={"max_block_ms": HUGE}), {},
         f"{C}.producer.max_block_ms: got {BIG}; expected an integer within 64 bits (a "
         "kafka-python option, passed through)"),
    case("passed-through-nan", cluster(consumer={"session_timeout_ms": float("nan")}), {},
         f"{C}.consumer.session_timeout_ms: got nan; expected a finite number (a kafka-python "
         "option, passed through)"),
    case("passed-through-newline", cluster(client_dns_lookup="default\n"), {},
         f"{C}.client_dns_lookup: got '***'; expected text of at most 4096 characters, no "
         "control characters (a kafka-python option, passed through)"),
    case("visibility-10**400", top(broker_transport_options={"visibility_timeout": HUGE}), {},
         f"broker_transport_options.visibility_timeout: got {BIG}; expected seconds as a number "
         "between 0 and 1000000000"),
    case("visibility-inf", top(broker_transport_options={"visibility_timeout": float("inf")}),
         {}, "broker_transport_options.visibility_timeout: got inf; expected seconds as a number "
         "between 0 and 1000000000"),
    case("transport-options-text", top(broker_transport_options="visibility_timeout=60"), {},
         "broker_transport_options: got 'visibility_timeout=60'; expected a mapping of "
         "transport options"),
    # start positions
    case("start-10**400", minimal(start=HUGE), {}, f"{P}.start: got {BIG}; expected {START}"),
    case("start-nan", minimal(start=float("nan")), {}, f"{P}.start: got nan; expected {START}"),
    case("start-bool", minimal(start=True), {}, f"{P}.start: got True; expected {START}"),
    case("start-absurd-relative", minimal(start="-99999999999d"), {},
         f"{P}.start: got '-99999999999d'; expected {START}"),
    case("start-year-99999", minimal(start="99999-01-01"), {},
         f"{P}.start: got '99999-01-01'; expected {START}"),
    case("start-before-1970", minimal(start="1969-12-31"), {},
         f"{P}.start: got '1969-12-31'; expected {START}"),
    case("start-latest-beyond-int64", minimal(start="latest-9223372036854775808"), {},
         f"{P}.start: got 'latest-9223372036854775808'; expected {START}"),
    case("start-latest-unicode-digit", minimal(start="latest-٣"), {},
         f"{P}.start: got 'latest-٣'; expected {START}"),
    # a trailing newline ('$' would accept it)
    case("topic-newline", minimal(topic="alarm-events\n"), {},
         f"{P}.topic: got 'alarm-events\\n'; expected {TOPIC}"),
    case("group-newline", minimal(group="alarms\n"), {}, f"{P}.group: got 'alarms\\n'; "
         "expected a consumer group name: 1-249 of [A-Za-z0-9._-]"),
    case("task-newline", minimal(tasks=["a.b\n"]), {}, f"{P}.tasks[0]: got 'a.b\\n'; "
         "expected a dotted Celery task name such as 'workers.alarms.parse'"),
    case("prefix-newline", top(workers_redis_key_prefix="workers\n"), {},
         "workers_redis_key_prefix: got 'workers\\n'; expected a Redis key prefix: 1-64 of "
         "[A-Za-z0-9._:-], no braces or spaces"),
    case("start-newline", minimal(start="latest-5\n"), {},
         f"{P}.start: got 'latest-5\\n'; expected {START}"),
    case("cluster-name-newline",
         {"workers_kafka_clusters": {"common\n": {"bootstrap_servers": ["kafka-1:9092"]}}}, {},
         f"workers_kafka_clusters.common\\n: got 'common\\n'; expected {NAME}"),
    case("pipeline-name-newline", names({"a\nb": {}}), {},
         f"workers_pipelines.a\\nb: got 'a\\nb'; expected {NAME}"),
    case("bootstrap-newline", cluster(bootstrap_servers=["kafka-1:9092\n"]), {},
         f"{C}.bootstrap_servers[0]: got 'kafka-1:9092\\n'; expected {HOSTPORT}"),
    case("bootstrap-unicode-port", cluster(bootstrap_servers=["kafka-1:٩٠٩٢"]), {},
         f"{C}.bootstrap_servers[0]: got 'kafka-1:٩٠٩٢'; expected {HOSTPORT}"),
    # empty or odd names, control characters, lengths
    case("queue-empty", minimal(queue=""), {}, f"{P}.queue: got ''; expected a Celery queue "
         "name: 1-255 of [A-Za-z0-9._:@-], or None"),
    case("queue-space", minimal(queue="my queue"), {}, f"{P}.queue: got 'my queue'; expected "
         "a Celery queue name: 1-255 of [A-Za-z0-9._:@-], or None"),
    case("username-nul", cluster(**SASL, sasl_plain_username="al\0ice",
                                 sasl_plain_password=SECRET), {},
         f"{C}.sasl_plain_username: got 'al\\x00ice'; expected a user name {TEXT}"),
    case("password-trailing-newline", cluster(**SASL, sasl_plain_username="alice",
                                              sasl_plain_password=SECRET + "\n"), {},
         f"{C}.sasl_plain_password: got '***'; expected a password {TEXT}"),
    case("client-id-escape-sequence", cluster(client_id="\x1b[31mred"), {},
         f"{C}.client_id: got '\\x1b[31mred'; expected a client id {TEXT}"),
    case("client-id-too-long", cluster(client_id="c" * 5000), {},
         f"{C}.client_id: got {cut('c' * 5000)}; expected a client id {TEXT}"),
    case("topic-too-long", minimal(topic="t" * 10_000), {},
         f"{P}.topic: got {cut('t' * 10_000)}; expected {TOPIC}"),
    case("pipeline-name-too-long", names({"p" * 1000: {}}), {}, "workers_pipelines."
         f"{'p' * 182}… (1018 characters): got {cut('p' * 1000)}; expected {NAME}"),
    case("pipeline-name-not-text", names({("a",): {}}), {},
         f"workers_pipelines.('a',): got ('a',); expected {NAME}"),
    # Redis URLs: the password stays masked whatever is wrong
    case("redis-url-newline", top(workers_redis_url=f"redis://:{SECRET}@redis:6379/0\n"), {},
         f"workers_redis_url: got 'redis://:***@redis:6379/0\\n'; expected {REDIS} "
         "(no spaces or line breaks)"),
    case("redis-url-user-and-password", top(workers_redis_url=f"http://al:{SECRET}@r:6379/0"),
         {}, f"workers_redis_url: got 'http://al:***@r:6379/0'; expected {REDIS}"),
    case("redis-url-password-as-user", top(workers_redis_url=f"http://{SECRET}@r:6379/0"), {},
         f"workers_redis_url: got 'http://***@r:6379/0'; expected {REDIS}"),
    case("redis-url-unicode-port", top(workers_redis_url=f"redis://:{SECRET}@r:٦٣٧٩/0"), {},
         f"workers_redis_url: got 'redis://:***@r:٦٣٧٩/0'; expected {REDIS} with a valid host "
         "and port"),
    case("redis-url-huge-db", top(workers_redis_url=f"redis://:{SECRET}@r:6379/" + "9" * 30),
         {}, f"workers_redis_url: got 'redis://:***@r:6379/{'9' * 30}'; expected a URL whose "
         "path is a database number such as /0"),
]  # fmt: skip

ENVIRONMENT = [
    case("env-interval-1e400", minimal(), {"WORKERS_PIPELINE_ALARMS_INTERVAL": "1e400"},
         "WORKERS_PIPELINE_ALARMS_INTERVAL: got '1e400'; expected seconds as a number between "
         "0.1 and 86400"),
    case("env-interval-minus-1e400", minimal(), {"WORKERS_PIPELINE_ALARMS_INTERVAL": "-1e400"},
         "WORKERS_PIPELINE_ALARMS_INTERVAL: got '-1e400'; expected seconds as a number between "
         "0.1 and 86400"),
    case("env-interval-nan", minimal(), {"WORKERS_PIPELINE_ALARMS_INTERVAL": "NaN"},
         "WORKERS_PIPELINE_ALARMS_INTERVAL: got 'NaN'; expected seconds as a number between "
         "0.1 and 86400"),
    case("env-interval-infinity", minimal(), {"WORKERS_PIPELINE_ALARMS_INTERVAL": "Infinity"},
         "WORKERS_PIPELINE_ALARMS_INTERVAL: got 'Infinity'; expected seconds as a number between "
         "0.1 and 86400"),
    case("env-interval-unicode-digits", minimal(), {"WORKERS_PIPELINE_ALARMS_INTERVAL": "٣.٥"},
         "WORKERS_PIPELINE_ALARMS_INTERVAL: got '٣.٥'; expected seconds as a number between "
         "0.1 and 86400"),
    case("env-batch-underscores", minimal(), {"WORKERS_PIPELINE_ALARMS_BATCH_SIZE": "1_000"},
         "WORKERS_PIPELINE_ALARMS_BATCH_SIZE: got '1_000'; expected an integer between 1 and "
         "50000"),
    case("env-batch-unicode-digit", minimal(), {"WORKERS_PIPELINE_ALARMS_BATCH_SIZE": "٣"},
         "WORKERS_PIPELINE_ALARMS_BATCH_SIZE: got '٣'; expected an integer between 1 and 50000"),
    case("env-batch-trailing-newline", minimal(), {"WORKERS_PIPELINE_ALARMS_BATCH_SIZE": "5\n"},
         "WORKERS_PIPELINE_ALARMS_BATCH_SIZE: got '5\\n'; expected an integer between 1 and "
         "50000"),
    case("env-batch-10**400", minimal(), {"WORKERS_PIPELINE_ALARMS_BATCH_SIZE": str(HUGE)},
         f"{P}.batch_size (from WORKERS_PIPELINE_ALARMS_BATCH_SIZE): got {BIG}; expected a "
         "value between 1 and 50000"),
    case("env-batch-5000-digits", minimal(), {"WORKERS_PIPELINE_ALARMS_BATCH_SIZE": "9" * 5000},
         f"WORKERS_PIPELINE_ALARMS_BATCH_SIZE: got {cut('9' * 5000)}; expected an integer "
         "between 1 and 50000"),
    case("env-offset-ttl-1e400", minimal(), {"WORKERS_OFFSET_TTL_SECONDS": "1e400"},
         "WORKERS_OFFSET_TTL_SECONDS: got '1e400'; expected seconds as an integer between 3600 "
         "and 2147483647, or None for no expiry"),
    case("env-request-timeout-10**400", minimal(),
         {"WORKERS_KAFKA_COMMON_REQUEST_TIMEOUT_MS": str(HUGE)},
         f"{C}.request_timeout_ms (from WORKERS_KAFKA_COMMON_REQUEST_TIMEOUT_MS): got {BIG}; "
         "expected a value between 1000 and 2147483647"),
    case("env-start-1e400", minimal(), {"WORKERS_PIPELINE_ALARMS_START": "1e400"},
         f"{P}.start (from WORKERS_PIPELINE_ALARMS_START): got '1e400'; expected {START}"),
    case("env-start-nan", minimal(), {"WORKERS_PIPELINE_ALARMS_START": "nan"},
         f"{P}.start (from WORKERS_PIPELINE_ALARMS_START): got 'nan'; expected {START}"),
    case("env-start-absurd", minimal(), {"WORKERS_PIPELINE_ALARMS_START": "-99999999999d"},
         f"{P}.start (from WORKERS_PIPELINE_ALARMS_START): got '-99999999999d'; expected {START}"),
    case("env-api-version-1e400", minimal(), {"WORKERS_KAFKA_COMMON_API_VERSION": "1e400"},
         f"{C}.api_version (from WORKERS_KAFKA_COMMON_API_VERSION): got '1e400'; expected a "
         "broker version such as '2.8.0' or [2, 8, 0]"),
    case("env-topic-newline", minimal(), {"WORKERS_PIPELINE_ALARMS_TOPIC": "alarm-events\n"},
         f"{P}.topic (from WORKERS_PIPELINE_ALARMS_TOPIC): got 'alarm-events\\n'; expected "
         f"{TOPIC}"),
    case("env-group-newline", minimal(), {"KAFKA_CONSUMER_GROUP": "alarms\n"},
         "workers_default_group (from KAFKA_CONSUMER_GROUP): got 'alarms\\n'; expected a "
         "consumer group name: 1-249 of [A-Za-z0-9._-]"),
    case("env-kafka-host-newline", minimal(), {"KAFKA_HOST": "kafka-1\nkafka-2"},
         f"{C}.bootstrap_servers[0] (from KAFKA_HOST): got 'kafka-1\\nkafka-2:9092'; expected "
         f"{HOSTPORT}"),
    case("env-kafka-port-unicode", minimal(), {"KAFKA_HOST": "kafka-1", "KAFKA_PORT": "٩٠٩٢"},
         f"{C}.bootstrap_servers[0] (from KAFKA_HOST/KAFKA_PORT): got 'kafka-1:٩٠٩٢'; expected "
         f"{HOSTPORT}"),
    case("env-redis-url-newline", minimal(),
         {"WORKERS_REDIS_URL": f"redis://:{SECRET}@redis:6379/0\n"},
         "workers_redis_url (from WORKERS_REDIS_URL): got 'redis://:***@redis:6379/0\\n'; "
         f"expected {REDIS} (no spaces or line breaks)"),
    case("env-password-newline", cluster(**SASL, sasl_plain_username="alice"),
         {"WORKERS_KAFKA_COMMON_SASL_PLAIN_PASSWORD": SECRET + "\n"},
         f"{C}.sasl_plain_password (from WORKERS_KAFKA_COMMON_SASL_PLAIN_PASSWORD): got '***'; "
         f"expected a password {TEXT}"),
    case("env-long-value", minimal(), {"WORKERS_PIPELINE_ALARMS_CODEC": "x" * 10_000},
         f"{P}.codec (from WORKERS_PIPELINE_ALARMS_CODEC): got {cut('x' * 10_000)}; expected "
         "one of 'json', 'text', 'base64'"),
    case("env-long-cluster-name", minimal(), {f"WORKERS_KAFKA_{'X' * 500}_TIMEOUT": "5"},
         f"workers_kafka_clusters.{'x' * 177}… (523 characters): got {cut('x' * 500)}; "
         f"expected {NAME}"),
]  # fmt: skip


@pytest.mark.parametrize(("conf", "environ", "message"), CONFIG_MODULE + ENVIRONMENT)
def test_a_hostile_value_ends_in_one_exact_line(
    conf: dict[str, Any], environ: dict[str, str], message: str
) -> None:
    # Act
    with pytest.raises(ConfigError) as info:
        load_settings(conf, environ)

    # Assert
    text = str(info.value)
    assert text == message
    assert "\n" not in text and SECRET not in text
    assert len(text) < 700  # every echoed part is capped


def test_a_mapping_that_contains_itself_is_refused_not_recursed() -> None:
    # Arrange
    producer: dict[str, Any] = {"linger_ms": 5}
    producer["acks"] = producer

    # Act
    with pytest.raises(ConfigError) as info:
        load_settings(cluster(producer=producer), {})

    # Assert
    assert str(info.value).startswith(f"{C}.producer.acks: got {{'linger_ms': 5, 'acks': {{...}}}}")


def test_a_value_whose_repr_fails_is_still_one_line() -> None:
    # Arrange
    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    # Act
    with pytest.raises(ConfigError) as info:
        load_settings(minimal(interval=Hostile()), {})

    # Assert
    assert str(info.value) == (
        f"{P}.interval: got <Hostile object>; expected seconds as a number between 0.1 and 86400"
    )


@pytest.mark.parametrize(
    ("environ", "key", "value"),
    [
        ({"WORKERS_PIPELINE_ALARMS_BATCH_SIZE": " 500 "}, "batch_size", 500),
        ({"WORKERS_PIPELINE_ALARMS_INTERVAL": "2.5e0"}, "interval", 2.5),
        ({"WORKERS_PIPELINE_ALARMS_START": "latest-9223372036854775807"}, "start",
         "latest-9223372036854775807"),
        ({"WORKERS_PIPELINE_ALARMS_QUEUE": ""}, "queue", None),
        ({"WORKERS_PIPELINE_ALARMS_QUEUE": "alarms.high:1"}, "queue", "alarms.high:1"),
    ],
)  # fmt: skip
def test_limits_still_accept_what_they_should(
    environ: dict[str, str], key: str, value: Any
) -> None:
    # Act
    pipeline = load_settings(minimal(), environ).pipeline("alarms")

    # Assert
    got = getattr(pipeline, key)
    assert (str(got) if key == "start" else got) == value
