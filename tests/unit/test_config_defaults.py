"""Defaults and kept values of ``workers.config``: the repository's celeryconfig.py, cluster
and pipeline defaults, start policies, and ``settings_for`` loading once per app."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import pytest
from celery import Celery

from tests.unit.config_support import ROOT, base_conf, minimal_conf
from workers.config import (
    ClusterConfig,
    PipelineConfig,
    RedisConfig,
    StartPolicy,
    load_settings,
    settings_for,
)
from workers.config.kafka_options import (
    BATCH_BYTES,
    FETCH_MAX_BYTES,
    FETCH_MAX_WAIT_MS,
    LINGER_MS,
)

# Variables the loader reads; removed from os.environ in tests that go through settings_for().
ENV_PREFIXES = ("WORKERS_", "KAFKA_", "ALERT_KAFKA_")


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
        # 2 MiB, not kafka-python's 50 MB; 100 ms, not 500 (latency)
        consumer={"fetch_max_bytes": FETCH_MAX_BYTES, "fetch_max_wait_ms": FETCH_MAX_WAIT_MS},
        producer={"linger_ms": LINGER_MS, "batch_size": BATCH_BYTES},  # batches of changes
    )
    # No other kafka-python option is added when none is configured: its own defaults apply.
    assert settings.cluster("common").producer_options() == {
        "bootstrap_servers": ["kafka-1:9092"],
        "acks": "all",  # dead letters and alerts must survive a leader change
        "linger_ms": LINGER_MS,
        "batch_size": BATCH_BYTES,
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
        execution="chain",
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
        "execution": "fused",
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
