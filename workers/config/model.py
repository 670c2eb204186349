"""The validated settings as frozen dataclasses; their reprs never show a secret."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from workers.config.kafka_options import CONSUMER_NAMES, SECRET_OPTIONS
from workers.config.masking import MASK, mask_url, shown

Mode = Literal["beat", "long_lived"]
Execution = Literal["chain", "fused"]
Codec = Literal["json", "text", "base64"]
OutOfRange = Literal["earliest", "latest"]
ClientLibrary = Literal["kafka-python", "confluent"]


def _frozen(mapping: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


def mask_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """kafka-python options with every secret replaced by ``***``."""
    return {k: (MASK if k in SECRET_OPTIONS and v else v) for k, v in options.items()}


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """One Kafka cluster: where it is, how long a connection lives, and client options.

    ``client`` options go to every kafka-python client of the cluster; ``producer`` and
    ``consumer`` options only to that role. All keep their kafka-python names. With
    ``client_library`` ``confluent`` the consumers and producers are librdkafka's, their options
    translated (``workers.kafka.rdkafka``); admin clients stay kafka-python's.
    """

    name: str
    bootstrap_servers: tuple[str, ...]
    reconnect_seconds: float = 60.0
    timeout: float = 6.0
    client_library: ClientLibrary = "kafka-python"
    client: Mapping[str, Any] = field(default_factory=_frozen)
    producer: Mapping[str, Any] = field(default_factory=_frozen)
    consumer: Mapping[str, Any] = field(default_factory=_frozen)

    def producer_options(self) -> dict[str, Any]:
        """Keyword arguments for ``KafkaProducer`` (secrets included: never log them).

        ``acks`` defaults to ``all``: dead letters and alerts must not vanish with a leader."""
        return {
            "bootstrap_servers": list(self.bootstrap_servers),
            "acks": "all",
            **self.client,
            **self.producer,
        }

    def consumer_options(self) -> dict[str, Any]:
        """Keyword arguments for ``KafkaConsumer``: manual assignment, no group, no auto commit."""
        return {
            "bootstrap_servers": list(self.bootstrap_servers),
            **self.client,
            **self.consumer,
            "enable_auto_commit": False,
            "group_id": None,
            # Raise OffsetOutOfRangeError instead of silently jumping: our policy decides.
            "auto_offset_reset": "none",
            # Reading never creates a topic: a metadata request for a deleted topic (of a
            # pipeline over many) must not bring it back.
            "allow_auto_create_topics": False,
        }

    def admin_options(self) -> dict[str, Any]:
        """Keyword arguments for ``KafkaAdminClient``."""
        return {"bootstrap_servers": list(self.bootstrap_servers), **self.client}

    def group_options(self, group: str) -> dict[str, Any]:
        """Keyword arguments for the kafka-python ``KafkaConsumer`` that commits and reads
        offsets under ``group`` without joining it (``workers.kafka.group_offsets``); it gives
        up bootstrapping after ``timeout`` unless ``bootstrap_timeout_ms`` is configured."""
        bounded = {"bootstrap_timeout_ms": int(self.timeout * 1000)}
        return {
            "bootstrap_servers": list(self.bootstrap_servers),
            **{k: v for k, v in bounded.items() if k in CONSUMER_NAMES},  # kafka-python 3.x
            **self.client,
            "group_id": group,
            "enable_auto_commit": False,
            "allow_auto_create_topics": False,
        }

    def __repr__(self) -> str:
        return (
            f"ClusterConfig(name={self.name!r}, "
            f"bootstrap_servers={list(self.bootstrap_servers)!r}, "
            f"reconnect_seconds={self.reconnect_seconds!r}, timeout={self.timeout!r}, "
            f"client_library={self.client_library!r}, "
            f"client={mask_options(self.client)!r}, producer={mask_options(self.producer)!r}, "
            f"consumer={mask_options(self.consumer)!r})"
        )


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """The Redis that holds offsets, leases and alert state (not necessarily Celery's broker)."""

    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "workers"
    socket_timeout: float = 5.0
    offset_ttl_seconds: int | None = None
    # The Sentinels' own credentials (``redis+sentinel://`` URLs only; the URL's are the master's).
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    # Replicas that must have an alert-state write before it counts (Redis WAIT); 0: none.
    wait_replicas: int = 0

    def __repr__(self) -> str:
        sentinel_password = None if self.sentinel_password is None else MASK
        return (
            f"RedisConfig(url={mask_url(self.url)!r}, key_prefix={self.key_prefix!r}, "
            f"socket_timeout={self.socket_timeout!r}, "
            f"offset_ttl_seconds={self.offset_ttl_seconds!r}, "
            f"sentinel_username={self.sentinel_username!r}, "
            f"sentinel_password={sentinel_password!r}, wait_replicas={self.wait_replicas!r})"
        )


_LATEST_MINUS = re.compile(r"latest-([0-9]{1,19})")
# Kafka offsets are signed 64-bit: no partition can hold more records than this.
OFFSET_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class StartPolicy:
    """Where a partition with no stored offset starts.

    ``kind`` is ``earliest``, ``latest``, ``latest-n`` (``n`` records before the end) or
    ``time`` (``at`` is the text as configured; relative forms resolve when first used).
    """

    kind: Literal["earliest", "latest", "latest-n", "time"]
    n: int = 0
    at: str = ""

    @classmethod
    def parse(cls, text: str) -> StartPolicy:
        """Raises ``ValueError`` if the text is not a start policy."""
        from workers.config.timeparse import parse_time

        if text in ("earliest", "latest"):
            return cls(kind=text)  # type: ignore[arg-type]
        m = _LATEST_MINUS.fullmatch(text)
        if m is not None:
            n = int(m.group(1))
            if n > OFFSET_MAX:
                raise ValueError(f"latest-N with N up to {OFFSET_MAX} (Kafka offsets are 64-bit)")
            return cls(kind="latest-n", n=n)
        if text.startswith("latest-"):
            raise ValueError(f"latest-N with N a number of records up to {OFFSET_MAX}")
        parse_time(text)
        return cls(kind="time", at=text)

    def __str__(self) -> str:
        if self.kind == "latest-n":
            return f"latest-{self.n}"
        return self.at if self.kind == "time" else self.kind


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """One topic (``topic``), a list of topics (``topics``) or the topics whose names match a
    pattern (``topic_pattern``) feeding one chain of alarm tasks; limits bound a single pull
    cycle. Exactly one of the three is set (``topic`` is empty for the other two)."""

    name: str
    cluster: str
    topic: str
    group: str
    tasks: tuple[str, ...]
    batch_size: int = 500
    # "chain": one Celery task per stage, chained; "fused": the stages in one task per batch.
    execution: Execution = "chain"
    mode: Mode = "beat"
    interval: float = 1.0
    concurrency: int = 1
    start: StartPolicy = StartPolicy("latest")
    max_records: int = 10_000
    max_bytes: int = 16 * 1024 * 1024
    max_seconds: float = 5.0
    codec: Codec = "json"
    dead_letter_topic: str = ""
    out_of_range: OutOfRange = "earliest"
    lease_ttl_seconds: float = 30.0
    max_partitions: int | None = None
    max_queue_length: int | None = None
    max_runtime_seconds: float = 300.0
    queue: str | None = None
    max_value_bytes: int = 512 << 10
    batch_max_bytes: int = 4 << 20
    batch_linger_seconds: float = 0.1
    max_depth: int = 64
    max_in_flight: int = 16
    max_attempts: int = 3
    redrive_seconds: float | None = None
    # The dead-letter brake (``workers.state.brake``): None switches a limit off.
    dead_letter_max_ratio: float | None = 0.5
    dead_letter_window: int = 1000
    dead_letter_max_consecutive: int | None = 1000
    # Kafka's copy of the committed offsets (``workers.pulling.kafka_copy``): None is off.
    kafka_commit_seconds: float | None = 5.0
    # Many topics (``workers.pulling.topics``): a list, or a pattern matched against whole names;
    # the topics are looked up again every ``topics_refresh_seconds``, and a topic that appears
    # after the pipeline first ran starts at ``new_topic_start``.
    topics: tuple[str, ...] = ()
    topic_pattern: str = ""
    topics_refresh_seconds: float = 30.0
    new_topic_start: StartPolicy = StartPolicy("earliest")

    @property
    def multi(self) -> bool:
        """True when the pipeline reads a list or a pattern of topics, not one ``topic``."""
        return bool(self.topics or self.topic_pattern)

    @property
    def source(self) -> str:
        """What the pipeline reads, for messages: the topic, the list, or the pattern."""
        if self.topic_pattern:
            return f"topics matching {self.topic_pattern!r}"
        if self.topics:
            return "topics " + ", ".join(self.topics)
        return self.topic


@dataclass(frozen=True, slots=True)
class AlarmSettings:
    """The reference alarm pipeline (``workers.alarms``): where alerts go and when they close."""

    output_topic: str = "alerts"
    output_cluster: str | None = None  # None: the cluster the events came from
    quiet_seconds: float = 1800.0
    max_future_seconds: float = 300.0
    dedupe_ttl_seconds: int = 86_400
    sweep_interval: float = 60.0


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """The worker's Prometheus endpoint (``workers.metrics``): off while ``port`` is None.
    ``directory`` holds the processes' metric files; None: a fresh temporary one per worker."""

    port: int | None = None
    address: str = "0.0.0.0"
    directory: str | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the package reads from the Celery config, validated once."""

    clusters: Mapping[str, ClusterConfig]
    redis: RedisConfig
    pipelines: Mapping[str, PipelineConfig]
    default_group: str = "workers"
    supervise_interval: float = 10.0
    alarms: AlarmSettings = AlarmSettings()
    log_format: str = "text"  # of worker and Beat logs: "text" or "json"
    metrics: MetricsSettings = MetricsSettings()

    def cluster(self, name: str) -> ClusterConfig:
        """Raises ``KeyError`` naming the cluster and the known ones."""
        try:
            return self.clusters[name]
        except KeyError:
            raise KeyError(
                f"unknown Kafka cluster {shown(name)}; known: {sorted(self.clusters)}"
            ) from None

    def pipeline(self, name: str) -> PipelineConfig:
        """Raises ``KeyError`` naming the pipeline and the known ones."""
        try:
            return self.pipelines[name]
        except KeyError:
            raise KeyError(
                f"unknown pipeline {shown(name)}; known: {sorted(self.pipelines)}"
            ) from None
