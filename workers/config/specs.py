"""The tables of settings: top-level ``workers_*`` keys, one Kafka cluster, one pipeline."""

from __future__ import annotations

import importlib
import ipaddress
import os
import re
from typing import Any

from workers.config.fields import (
    INT32_MAX,
    Field,
    at_least,
    choice,
    fail,
    host_ports,
    mask_url,
    task_names,
    topic_name,
)
from workers.config.model import StartPolicy
from workers.config.redis_urls import check_redis_url

# Whole-string matches only (fullmatch): '$' would also accept a trailing newline.
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_GROUP = re.compile(r"[A-Za-z0-9._-]{1,249}")
_PREFIX = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# Celery queue names: what every transport takes (AMQP's limit is 255 bytes).
_QUEUE = re.compile(r"[A-Za-z0-9._:@-]{1,255}")
# The largest value each kind of number may take: the clients' int32 fields, and seconds
# up to about 31 years where nothing else bounds them.
_SECONDS_MAX = 1e9


def check_name(key: str, value: Any) -> str:
    """Cluster and pipeline names: lower-case, so they map to env variable names and back."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise fail(key, value, "a name of lower-case letters, digits, '_' or '-' (max 63)")
    return value


def _group(key: str, value: str) -> str:
    if not _GROUP.fullmatch(value):
        raise fail(key, value, "a consumer group name: 1-249 of [A-Za-z0-9._-]")
    return value


def _prefix(key: str, value: str) -> str:
    if not _PREFIX.fullmatch(value):
        raise fail(key, value, "a Redis key prefix: 1-64 of [A-Za-z0-9._:-], no braces or spaces")
    return value


def _sentinel_user(key: str, value: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise fail(key, value, "the Sentinels' user name (no spaces), or None")
    return value


def _sentinel_password(key: str, value: str) -> str:
    if not value:
        raise fail(key, value, "the Sentinels' password (not empty), or None")
    return value


def _queue(key: str, value: str) -> str:
    if not _QUEUE.fullmatch(value):
        raise fail(key, value, "a Celery queue name: 1-255 of [A-Za-z0-9._:@-], or None")
    return value


START_FORMS = (
    "earliest, latest, latest-N (N up to 2^63-1), or a time from 1970 to 9999 "
    "(ISO 8601, epoch seconds or milliseconds, or relative such as -1h)"
)


def _start(key: str, value: Any) -> StartPolicy:
    # Text, or epoch seconds/milliseconds as a number; never a boolean or a container.
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise fail(key, value, START_FORMS)
    try:
        return StartPolicy.parse(value if isinstance(value, str) else _epoch_text(value))
    except ValueError:
        raise fail(key, value, START_FORMS) from None


def _topics(key: str, value: list[Any] | tuple[Any, ...]) -> tuple[str, ...]:
    if not value:
        raise fail(key, value, "a non-empty list of distinct Kafka topic names")
    seen: dict[str, int] = {}
    for i, name in enumerate(value):
        if not isinstance(name, str):
            raise fail(f"{key}[{i}]", name, "a Kafka topic name")
        topic_name(f"{key}[{i}]", name)
        if name in seen:
            raise fail(f"{key}[{i}]", name, f"a topic not already listed (at [{seen[name]}])")
        seen[name] = i
    return tuple(value)


def _pattern(key: str, value: str) -> str:
    if not value or len(value) > 1000:
        raise fail(key, value, "a regular expression of 1-1000 characters")
    try:
        re.compile(value)
    except re.error as exc:
        raise fail(key, value, f"a valid regular expression ({exc})") from None
    return value


def _epoch_text(value: float) -> str:
    """An epoch number as text for ``StartPolicy``; ValueError when no time can be that."""
    # Written so that NaN fails too; ints of any size compare exactly.
    if not 0 <= value < 10**16:
        raise ValueError("epoch number out of range")
    return repr(value) if isinstance(value, float) and not value.is_integer() else str(int(value))


CLIENT_LIBRARIES = ("kafka-python", "confluent")
CONFLUENT_INSTALL = "pip install 'celery-kafka-workers[confluent]'"


def _client_library(key: str, value: Any) -> str:
    """The Kafka client library of a cluster; ``confluent`` only where confluent-kafka imports."""
    choice(*CLIENT_LIBRARIES)(key, value)
    if value == "confluent":
        try:
            importlib.import_module("confluent_kafka")
        except ImportError:
            raise fail(
                key,
                value,
                f"'kafka-python', or 'confluent' once confluent-kafka is installed "
                f"({CONFLUENT_INSTALL})",
            ) from None
    return str(value)


_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(\.{_LABEL})*")


def _listen_address(key: str, value: str) -> str:
    """Where the metrics endpoint listens: an IPv4 or IPv6 address, or a host name."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if len(value) > 253 or not _HOST.fullmatch(value):
            expected = "an IP address (0.0.0.0, ::, 127.0.0.1) or a host name"
            raise fail(key, value, expected) from None
    return value


def _directory(key: str, value: str) -> str:
    """An absolute directory path (a worker may change its working directory)."""
    if not os.path.isabs(value) or os.path.normpath(value) == os.sep:
        raise fail(key, value, "an absolute directory path other than '/', or None")
    return value


TOP: dict[str, Field] = {
    "workers_kafka_clusters": Field("dict", "a mapping of cluster name to cluster settings"),
    "workers_pipelines": Field("dict", "a mapping of pipeline name to pipeline settings", {}),
    "workers_redis_url": Field(
        "str",
        "a Redis URL",
        "redis://127.0.0.1:6379/0",
        check_redis_url,
        secret=True,
        mask=mask_url,
    ),  # fmt: skip
    "workers_redis_sentinel_username": Field(
        "str", "the Sentinels' user name, or None", None, _sentinel_user, nullable=True
    ),
    "workers_redis_sentinel_password": Field(
        "str",
        "the Sentinels' password, or None",
        None,
        _sentinel_password,
        secret=True,
        nullable=True,
    ),  # fmt: skip
    "workers_redis_wait_replicas": Field(
        "int",
        "a number of replicas between 0 and 16, or None (1 with a redis+sentinel:// URL, else 0)",
        None,
        at_least(0, 16),
        nullable=True,
    ),
    "workers_redis_key_prefix": Field("str", "a Redis key prefix", "workers", _prefix),
    "workers_redis_socket_timeout": Field(
        "float", "seconds as a number between 0.1 and 300", 5.0, at_least(0.1, 300)
    ),
    "workers_offset_ttl_seconds": Field(
        "int",
        "seconds as an integer between 3600 and 2147483647, or None for no expiry",
        None,
        at_least(3600, INT32_MAX, " (shorter lets live offsets vanish)"),
        nullable=True,
    ),
    "workers_default_group": Field("str", "a consumer group name", "workers", _group),
    "workers_alarm_output_topic": Field("str", "a Kafka topic name", "alerts", topic_name),
    "workers_alarm_output_cluster": Field(
        "str", "a configured cluster name, or None for the input's cluster", None, nullable=True
    ),
    "workers_alarm_quiet_seconds": Field(
        "float", "seconds as a number between 10 and 2592000", 1800.0, at_least(10, 2_592_000)
    ),
    "workers_alarm_max_future_seconds": Field(
        "float", "seconds as a number between 0 and 86400", 300.0, at_least(0, 86_400)
    ),
    "workers_alarm_dedupe_ttl_seconds": Field(
        "int", "seconds as an integer between 60 and 2592000", 86_400, at_least(60, 2_592_000)
    ),
    "workers_alarm_sweep_interval": Field(
        "float", "seconds as a number between 1 and 3600", 60.0, at_least(1, 3600)
    ),
    "workers_supervise_interval": Field(
        "float", "seconds as a number between 1 and 3600", 10.0, at_least(1, 3600)
    ),
    "workers_log_format": Field("str", "'text' or 'json'", "text", choice("text", "json")),
    "workers_metrics_port": Field(
        "int",
        "a TCP port between 1 and 65535, or None for no metrics endpoint",
        None,
        at_least(1, 65535),
        nullable=True,
    ),
    "workers_metrics_address": Field(
        "str", "an IP address or host name to listen on", "0.0.0.0", _listen_address
    ),
    "workers_metrics_dir": Field(
        "str",
        "an absolute directory path, or None for a fresh temporary directory per worker",
        None,
        _directory,
        nullable=True,
    ),
}

CLUSTER: dict[str, Field] = {
    "bootstrap_servers": Field("any", "a non-empty list of 'host:port'", check=host_ports),
    "reconnect_seconds": Field(
        "float",
        "seconds as a number between 1 and 1000000000 (max connection age)",
        60.0,
        at_least(1, _SECONDS_MAX, " (reconnecting faster than 1 s only churns connections)"),
    ),
    "timeout": Field("float", "seconds as a number between 0.1 and 300", 6.0, at_least(0.1, 300)),
    "client_library": Field(
        "str", "'kafka-python' or 'confluent'", "kafka-python", _client_library
    ),
    "producer": Field("dict", "a mapping of kafka-python producer options", {}),
    "consumer": Field("dict", "a mapping of kafka-python consumer options", {}),
}

PIPELINE: dict[str, Field] = {
    "cluster": Field("str", "the name of a configured Kafka cluster"),
    "topic": Field("str", "a Kafka topic name", None, topic_name, nullable=True),
    "topics": Field(
        "list", "a non-empty list of distinct Kafka topic names", None, _topics, nullable=True
    ),  # fmt: skip
    "topic_pattern": Field(
        "str", "a regular expression matching whole topic names", None, _pattern, nullable=True
    ),
    "topics_refresh_seconds": Field(
        "float", "seconds as a number between 1 and 86400", 30.0, at_least(1, 86_400)
    ),
    "new_topic_start": Field("any", START_FORMS, StartPolicy("earliest"), _start),
    "group": Field("str", "a consumer group name", None, _group, nullable=True),
    "tasks": Field("list", "a non-empty list of Celery task names", check=task_names),
    "batch_size": Field("int", "an integer between 1 and 50000", 500, at_least(1, 50_000)),
    "mode": Field("str", "'beat' or 'long_lived'", "beat", choice("beat", "long_lived")),
    "interval": Field(
        "float",
        "seconds as a number between 0.1 and 86400",
        1.0,
        at_least(0.1, 86_400, " (a shorter poll interval only hammers Redis and Kafka)"),
    ),
    "concurrency": Field("int", "an integer between 1 and 256", 1, at_least(1, 256)),
    "start": Field("any", START_FORMS, StartPolicy("latest"), _start),
    "max_records": Field("int", "an integer between 1 and 1000000", 10_000, at_least(1, 1e6)),
    "max_bytes": Field(
        "int", "bytes as an integer between 1024 and 1073741824", 16 << 20, at_least(1024, 1 << 30)
    ),
    "max_seconds": Field(
        "float", "seconds as a number between 0.1 and 300", 5.0, at_least(0.1, 300)
    ),
    "execution": Field("str", "'chain' or 'fused'", "chain", choice("chain", "fused")),
    "codec": Field("str", "'json', 'text' or 'base64'", "json", choice("json", "text", "base64")),
    "dead_letter_topic": Field("str", "a Kafka topic name", None, topic_name, nullable=True),
    "out_of_range": Field(
        "str", "'earliest' or 'latest'", "earliest", choice("earliest", "latest")
    ),
    "lease_ttl_seconds": Field(
        "float", "seconds as a number between 1 and 3600", 30.0, at_least(1, 3600)
    ),
    "max_partitions": Field(
        "int",
        "an integer between 1 and 2147483647, or None",
        None,
        at_least(1, INT32_MAX),
        nullable=True,
    ),  # fmt: skip
    "max_queue_length": Field(
        "int",
        "an integer between 1 and 2147483647, or None",
        None,
        at_least(1, INT32_MAX),
        nullable=True,
    ),  # fmt: skip
    "max_runtime_seconds": Field(
        "float", "seconds as a number between 10 and 86400", 300.0, at_least(10, 86_400)
    ),
    "queue": Field("str", "a Celery queue name", None, _queue, nullable=True),
    "max_value_bytes": Field(
        "int", "bytes as an integer between 1 and 67108864", 512 << 10, at_least(1, 64 << 20)
    ),
    "batch_max_bytes": Field(
        "int", "bytes as an integer between 1024 and 268435456", 4 << 20, at_least(1024, 256 << 20)
    ),
    "batch_linger_seconds": Field(
        "float", "seconds as a number between 0.001 and 60", 0.1, at_least(0.001, 60)
    ),
    "max_depth": Field(
        "int", "an integer between 1 and 200", 64, at_least(1, 200, " (orjson stops at 255)")
    ),
    "max_in_flight": Field("int", "an integer between 1 and 10000", 16, at_least(1, 10_000)),
    "max_attempts": Field("int", "an integer between 1 and 100", 3, at_least(1, 100)),
    "redrive_seconds": Field(
        "float",
        "seconds as a number between 1 and 86400, or None to derive it from the stages' "
        "time limits",
        None,
        at_least(1, 86_400),
        nullable=True,
    ),
    "dead_letter_max_ratio": Field(
        "float",
        "a fraction between 0 and 1 of a dead_letter_window's records, or None for no limit",
        0.5,
        at_least(0, 1),
        nullable=True,
    ),
    "dead_letter_window": Field(
        "int", "records as an integer between 10 and 1000000", 1000, at_least(10, 1e6)
    ),
    "dead_letter_max_consecutive": Field(
        "int",
        "an integer between 1 and 1000000000, or None for no limit",
        1000,
        at_least(1, 1e9),
        nullable=True,
    ),
    "kafka_commit_seconds": Field(
        "float",
        "seconds as a number between 1 and 3600, or None to keep offsets in Redis only",
        5.0,
        at_least(1, 3600, ", or None for no copy in Kafka"),
        nullable=True,
    ),
}
