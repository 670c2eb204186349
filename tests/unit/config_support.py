"""Shared by the ``workers.config`` tests: a valid config with secrets planted in it, ways to
change it by dotted path, and the ``ConfigError`` a bad one ends in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from workers.config import load_settings
from workers.exceptions import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SECRET = "hunter2-secret"
REDIS_URL = f"redis://:{SECRET}@redis.example:6379/0"
DROP = object()

C = "workers_kafka_clusters.common"
A = "workers_kafka_clusters.alert"
P = "workers_pipelines.alarms"


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
