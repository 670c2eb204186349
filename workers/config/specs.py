"""The tables of settings: top-level ``workers_*`` keys, one Kafka cluster, one pipeline."""

from __future__ import annotations

import re
from typing import Any

from workers.config.fields import (
    Field,
    at_least,
    choice,
    fail,
    host_ports,
    redis_url,
    task_names,
    topic_name,
)
from workers.config.model import StartPolicy

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_GROUP = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_PREFIX = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def check_name(key: str, value: Any) -> str:
    """Cluster and pipeline names: lower-case, so they map to env variable names and back."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise fail(key, value, "a name of lower-case letters, digits, '_' or '-' (max 63)")
    return value


def _group(key: str, value: str) -> str:
    if not _GROUP.match(value):
        raise fail(key, value, "a consumer group name: 1-249 of [A-Za-z0-9._-]")
    return value


def _prefix(key: str, value: str) -> str:
    if not _PREFIX.match(value):
        raise fail(key, value, "a Redis key prefix: 1-64 of [A-Za-z0-9._:-], no braces or spaces")
    return value


def _start(key: str, value: Any) -> StartPolicy:
    try:
        return StartPolicy.parse(str(value))
    except ValueError:
        raise fail(
            key, value, "earliest, latest, latest-N, or a time (ISO 8601, epoch, or -1h)"
        ) from None


TOP: dict[str, Field] = {
    "workers_kafka_clusters": Field("dict", "a mapping of cluster name to cluster settings"),
    "workers_pipelines": Field("dict", "a mapping of pipeline name to pipeline settings", {}),
    "workers_redis_url": Field(
        "str", "a Redis URL", "redis://127.0.0.1:6379/0", redis_url, secret=True
    ),
    "workers_redis_key_prefix": Field("str", "a Redis key prefix", "workers", _prefix),
    "workers_redis_socket_timeout": Field(
        "float", "seconds as a number between 0.1 and 300", 5.0, at_least(0.1, 300)
    ),
    "workers_offset_ttl_seconds": Field(
        "int",
        "seconds as an integer >= 3600, or None for no expiry",
        None,
        at_least(3600, why=" (shorter lets live offsets vanish)"),
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
}

CLUSTER: dict[str, Field] = {
    "bootstrap_servers": Field("any", "a non-empty list of 'host:port'", check=host_ports),
    "reconnect_seconds": Field(
        "float",
        "seconds as a number >= 1 (max connection age)",
        60.0,
        at_least(1, why=" (reconnecting faster than that only churns connections)"),
    ),
    "timeout": Field("float", "seconds as a number between 0.1 and 300", 6.0, at_least(0.1, 300)),
    "producer": Field("dict", "a mapping of kafka-python producer options", {}),
    "consumer": Field("dict", "a mapping of kafka-python consumer options", {}),
}

PIPELINE: dict[str, Field] = {
    "cluster": Field("str", "the name of a configured Kafka cluster"),
    "topic": Field("str", "a Kafka topic name", check=topic_name),
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
    "start": Field("any", "earliest, latest, latest-N, or a time", StartPolicy("latest"), _start),
    "max_records": Field("int", "an integer between 1 and 1000000", 10_000, at_least(1, 1e6)),
    "max_bytes": Field(
        "int", "bytes as an integer between 1024 and 1073741824", 16 << 20, at_least(1024, 1 << 30)
    ),
    "max_seconds": Field(
        "float", "seconds as a number between 0.1 and 300", 5.0, at_least(0.1, 300)
    ),
    "codec": Field("str", "'json', 'text' or 'base64'", "json", choice("json", "text", "base64")),
    "dead_letter_topic": Field("str", "a Kafka topic name", None, topic_name, nullable=True),
    "out_of_range": Field(
        "str", "'earliest' or 'latest'", "earliest", choice("earliest", "latest")
    ),
    "lease_ttl_seconds": Field(
        "float", "seconds as a number between 1 and 3600", 30.0, at_least(1, 3600)
    ),
    "max_partitions": Field("int", "an integer >= 1 or None", None, at_least(1), nullable=True),
    "max_queue_length": Field("int", "an integer >= 1 or None", None, at_least(1), nullable=True),
    "max_runtime_seconds": Field(
        "float", "seconds as a number between 10 and 86400", 300.0, at_least(10, 86_400)
    ),
    "queue": Field("str", "a Celery queue name", None, nullable=True),
    "max_value_bytes": Field(
        "int", "bytes as an integer between 1 and 67108864", 512 << 10, at_least(1, 64 << 20)
    ),
    "batch_max_bytes": Field(
        "int", "bytes as an integer between 1024 and 268435456", 4 << 20, at_least(1024, 256 << 20)
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
}
