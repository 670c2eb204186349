"""Read the ``workers_*`` settings once into frozen dataclasses, checking every rule."""

from __future__ import annotations

import os
import re
import weakref
from collections.abc import Mapping
from typing import Any

from workers.config import kafka_options as ko
from workers.config.env import apply_env
from workers.config.fields import check_mapping, fail, topic_name
from workers.config.masking import clip
from workers.config.model import (
    AlarmSettings,
    ClusterConfig,
    MetricsSettings,
    PipelineConfig,
    Settings,
    _frozen,
)
from workers.config.rdkafka_options import check_rdkafka
from workers.config.redis_urls import redis_config
from workers.config.specs import CLUSTER, PIPELINE, TOP, check_name
from workers.exceptions import ConfigError

_SASL_NEEDS_PASSWORD = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# Celery's Redis transport re-delivers an unacknowledged message after this many seconds.
_DEFAULT_VISIBILITY_TIMEOUT = 3600.0


def load_settings(conf: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Validate the Celery config (with environment overrides) into ``Settings``.

    Raises ``ConfigError`` on the first bad value; its message names the key path (and the
    environment variable it came from), the value with secrets masked, and the expected form.
    """
    ours = {k: v for k, v in conf.items() if isinstance(k, str) and k.startswith("workers_")}
    raw, sources = apply_env(ours, os.environ if environ is None else environ)
    try:
        return _build(raw, _visibility_timeout(conf))
    except ConfigError as exc:
        var = sources.get(exc.key) or next(
            (v for k, v in sources.items() if exc.key.startswith(k + "[")), None
        )
        if var is None:
            raise
        raise ConfigError(f"{exc.key} (from {clip(var)})", exc.value, exc.expected) from None


def _build(raw: Mapping[str, Any], visibility_timeout: float) -> Settings:
    top = check_mapping("", TOP, raw)
    clusters = {
        check_name(f"workers_kafka_clusters.{name}", name): _cluster(name, value)
        for name, value in top["workers_kafka_clusters"].items()
    }
    if not clusters:
        raise fail("workers_kafka_clusters", {}, "at least one cluster, e.g. 'common'")
    redis = redis_config(top)
    pipelines = {
        check_name(f"workers_pipelines.{name}", name): _pipeline(
            name, value, clusters, top["workers_default_group"], visibility_timeout
        )
        for name, value in top["workers_pipelines"].items()
    }
    return Settings(
        clusters=_frozen(clusters),
        redis=redis,
        pipelines=_frozen(pipelines),
        default_group=top["workers_default_group"],
        supervise_interval=float(top["workers_supervise_interval"]),
        log_format=top["workers_log_format"],
        alarms=_alarms(top, clusters, visibility_timeout),
        metrics=MetricsSettings(
            port=top["workers_metrics_port"],
            address=top["workers_metrics_address"],
            directory=top["workers_metrics_dir"],
        ),
    )


def _alarms(
    top: Mapping[str, Any], clusters: Mapping[str, ClusterConfig], visibility_timeout: float
) -> AlarmSettings:
    cluster = top["workers_alarm_output_cluster"]
    if cluster is not None and cluster not in clusters:
        raise fail(
            "workers_alarm_output_cluster", cluster, f"one of the clusters {sorted(clusters)}"
        )
    ttl = top["workers_alarm_dedupe_ttl_seconds"]
    if ttl <= visibility_timeout:
        raise fail(
            "workers_alarm_dedupe_ttl_seconds",
            ttl,
            f"more than the Celery broker's visibility_timeout ({visibility_timeout:g} s), "
            "or a redelivered batch is applied twice",
        )
    return AlarmSettings(
        output_topic=top["workers_alarm_output_topic"],
        output_cluster=cluster,
        quiet_seconds=float(top["workers_alarm_quiet_seconds"]),
        max_future_seconds=float(top["workers_alarm_max_future_seconds"]),
        dedupe_ttl_seconds=ttl,
        sweep_interval=float(top["workers_alarm_sweep_interval"]),
    )


def _cluster(name: str, raw: Any) -> ClusterConfig:
    prefix = f"workers_kafka_clusters.{name}"
    spec = {**CLUSTER, **ko.COMMON}
    values = check_mapping(prefix, spec, raw, extra_ok=ko.passthrough("common"))
    # Common options set per role get the same checks as at the cluster level.
    producer = check_mapping(
        f"{prefix}.producer",
        {**ko.COMMON, **ko.PRODUCER},
        values.pop("producer"),
        extra_ok=ko.passthrough("producer"),
    )
    consumer = check_mapping(
        f"{prefix}.consumer",
        {**ko.COMMON, **ko.CONSUMER},
        values.pop("consumer"),
        extra_ok=ko.passthrough("consumer"),
    )
    bootstrap = values.pop("bootstrap_servers")
    reconnect = float(values.pop("reconnect_seconds"))
    timeout = float(values.pop("timeout"))
    library = values.pop("client_library")
    client = values  # only options actually set remain: kafka-python's defaults stay in force
    _check_security(prefix, client)
    _check_security(f"{prefix}.producer", {**client, **producer})
    _check_security(f"{prefix}.consumer", {**client, **consumer})
    if library == "confluent":  # every option must have a librdkafka equivalent
        for where, options in ((prefix, client), (f"{prefix}.producer", producer),
                               (f"{prefix}.consumer", consumer)):  # fmt: skip
            check_rdkafka(where, options)
    return ClusterConfig(
        name=name,
        bootstrap_servers=bootstrap,
        reconnect_seconds=reconnect,
        timeout=timeout,
        client_library=library,
        client=_frozen(client),
        producer=_frozen(producer),
        consumer=_frozen(consumer),
    )


def _check_security(prefix: str, client: Mapping[str, Any]) -> None:
    protocol = client.get("security_protocol", "PLAINTEXT")
    mechanism = client.get("sasl_mechanism")
    if protocol.startswith("SASL_") and mechanism is None:
        raise fail(
            f"{prefix}.sasl_mechanism",
            None,
            "one of " + ", ".join(ko.SASL_MECHANISMS) + f" with {protocol}",
        )
    if mechanism is not None and not protocol.startswith("SASL_"):
        raise fail(
            f"{prefix}.security_protocol",
            protocol,
            "SASL_PLAINTEXT or SASL_SSL with sasl_mechanism",
        )
    if mechanism in _SASL_NEEDS_PASSWORD:
        for key in ("sasl_plain_username", "sasl_plain_password"):
            if not client.get(key):
                field = ko.COMMON.get(key)
                raise fail(f"{prefix}.{key}", client.get(key), f"a value with {mechanism}", field)
    for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_crlfile"):
        path = client.get(key)
        if path is not None and not os.path.isfile(path):
            raise fail(f"{prefix}.{key}", path, "the path of an existing, readable file")


def _pipeline(
    name: str,
    raw: Any,
    clusters: Mapping[str, ClusterConfig],
    default_group: str,
    visibility_timeout: float,
) -> PipelineConfig:
    prefix = f"workers_pipelines.{name}"
    v = check_mapping(prefix, PIPELINE, raw)
    if v["cluster"] not in clusters:
        raise fail(f"{prefix}.cluster", v["cluster"], f"one of the clusters {sorted(clusters)}")
    if v["batch_size"] > v["max_records"]:
        raise fail(f"{prefix}.batch_size", v["batch_size"], f"<= max_records ({v['max_records']})")
    if v["lease_ttl_seconds"] <= v["max_seconds"]:
        raise fail(
            f"{prefix}.lease_ttl_seconds",
            v["lease_ttl_seconds"],
            f"more than max_seconds ({v['max_seconds']}), or a lease expires mid-pull",
        )
    if v["max_runtime_seconds"] >= visibility_timeout:
        raise fail(
            f"{prefix}.max_runtime_seconds",
            v["max_runtime_seconds"],
            f"less than the Celery broker's visibility_timeout ({visibility_timeout:g} s), "
            "or the broker re-delivers a running consumer",
        )
    given = [k for k in ("topic", "topics", "topic_pattern") if v[k] is not None]
    if len(given) != 1:
        raise fail(
            f"{prefix}.{given[1] if given else 'topic'}",
            v[given[1]] if given else None,
            "exactly one of topic, topics and topic_pattern",
        )
    dead_letter = v["dead_letter_topic"] or topic_name(
        f"{prefix}.dead_letter_topic", f"{v['topic'] or name}.dlq"
    )
    pattern = v["topic_pattern"] or ""
    if dead_letter in (v["topic"], *(v["topics"] or ())):
        raise fail(f"{prefix}.dead_letter_topic", dead_letter, "a topic other than the pipeline's")
    if pattern and re.fullmatch(pattern, dead_letter):
        raise fail(
            f"{prefix}.dead_letter_topic",
            dead_letter,
            f"a topic that topic_pattern {pattern!r} does not match (the pipeline would read "
            "its own dead letters)",
        )
    return PipelineConfig(
        name=name,
        cluster=v["cluster"],
        topic=v["topic"] or "",
        topics=v["topics"] or (),
        topic_pattern=pattern,
        topics_refresh_seconds=float(v["topics_refresh_seconds"]),
        new_topic_start=v["new_topic_start"],
        group=v["group"] or default_group,
        tasks=v["tasks"],
        batch_size=v["batch_size"],
        execution=v["execution"],
        mode=v["mode"],
        interval=float(v["interval"]),
        concurrency=v["concurrency"],
        start=v["start"],
        max_records=v["max_records"],
        max_bytes=v["max_bytes"],
        max_seconds=float(v["max_seconds"]),
        codec=v["codec"],
        dead_letter_topic=dead_letter,
        out_of_range=v["out_of_range"],
        lease_ttl_seconds=float(v["lease_ttl_seconds"]),
        max_partitions=v["max_partitions"],
        max_queue_length=v["max_queue_length"],
        max_runtime_seconds=float(v["max_runtime_seconds"]),
        queue=v["queue"],
        max_value_bytes=v["max_value_bytes"],
        batch_max_bytes=v["batch_max_bytes"],
        batch_linger_seconds=float(v["batch_linger_seconds"]),
        max_depth=v["max_depth"],
        max_in_flight=v["max_in_flight"],
        max_attempts=v["max_attempts"],
        redrive_seconds=None if v["redrive_seconds"] is None else float(v["redrive_seconds"]),
        dead_letter_max_ratio=(
            None if v["dead_letter_max_ratio"] is None else float(v["dead_letter_max_ratio"])
        ),
        dead_letter_window=v["dead_letter_window"],
        dead_letter_max_consecutive=v["dead_letter_max_consecutive"],
        kafka_commit_seconds=(
            None if v["kafka_commit_seconds"] is None else float(v["kafka_commit_seconds"])
        ),
    )


def _visibility_timeout(conf: Mapping[str, Any]) -> float:
    options = conf.get("broker_transport_options") or {}
    if not isinstance(options, Mapping):
        raise fail("broker_transport_options", options, "a mapping of transport options")
    value = options.get("visibility_timeout", _DEFAULT_VISIBILITY_TIMEOUT)
    # NaN fails every comparison; ints of any size compare exactly.
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1e9:
        raise fail(
            "broker_transport_options.visibility_timeout",
            value,
            "seconds as a number between 0 and 1000000000",
        )
    return float(value)


_CACHE: weakref.WeakKeyDictionary[Any, Settings] = weakref.WeakKeyDictionary()


def reload_settings(app: Any) -> Settings:
    """Load the app's settings again (after the app was configured anew) and keep them."""
    _CACHE.pop(app, None)
    return settings_for(app)


def settings_for(app: Any) -> Settings:
    """The app's settings, loaded on first use and kept for the life of the app."""
    settings = _CACHE.get(app)
    if settings is None:
        settings = _CACHE[app] = load_settings(app.conf)
    return settings
