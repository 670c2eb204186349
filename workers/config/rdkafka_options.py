"""librdkafka (``client_library: confluent``): the same cluster options, validated under
their kafka-python names (``workers.config.kafka_options``), become librdkafka properties.
Options without an equivalent, and values outside librdkafka's limits, are refused at load."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workers.config.fields import MASK, fail
from workers.config.kafka_options import COMMON, CONSUMER, MANAGED, PRODUCER

RDKAFKA_NAMES: dict[str, str] = {
    "security_protocol": "security.protocol",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
    "sasl_kerberos_service_name": "sasl.kerberos.service.name",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
    "ssl_crlfile": "ssl.crl.location",
    "ssl_password": "ssl.key.password",
    "ssl_ciphers": "ssl.cipher.suites",
    "client_id": "client.id",
    "connections_max_idle_ms": "connections.max.idle.ms",
    "metadata_max_age_ms": "metadata.max.age.ms",
    "retry_backoff_ms": "retry.backoff.ms",
    "reconnect_backoff_ms": "reconnect.backoff.ms",
    "reconnect_backoff_max_ms": "reconnect.backoff.max.ms",
    "receive_buffer_bytes": "socket.receive.buffer.bytes",
    "send_buffer_bytes": "socket.send.buffer.bytes",
    "linger_ms": "linger.ms",
    "batch_size": "batch.size",
    "max_request_size": "message.max.bytes",
    "retries": "retries",
    "enable_idempotence": "enable.idempotence",
    "max_in_flight_requests_per_connection": "max.in.flight.requests.per.connection",
    "delivery_timeout_ms": "delivery.timeout.ms",
    "max_partition_fetch_bytes": "max.partition.fetch.bytes",
    "fetch_max_bytes": "fetch.max.bytes",
    "fetch_min_bytes": "fetch.min.bytes",
    "fetch_max_wait_ms": "fetch.wait.max.ms",
    "check_crcs": "check.crcs",
    "isolation_level": "isolation.level",
}
# Translated by value (see ``rdkafka_config``), or read by the adapters themselves:
# ``max_poll_records`` is the default of a poll's ``max_records``; librdkafka asks the broker
# for its API versions, so ``api_version`` has nothing to set.
RDKAFKA_SPECIAL = frozenset(
    {"acks", "compression_type", "ssl_check_hostname", "request_timeout_ms", "max_poll_records",
     "api_version"}
)  # fmt: skip
# librdkafka's bounds where they are narrower than the checks above (librdkafka 2.16 says so
# when one is passed), and where it needs fetch.max.bytes >= message.max.bytes >= 1000.
RDKAFKA_RANGES: dict[str, tuple[int, int]] = {
    "fetch_max_wait_ms": (0, 300_000),
    "linger_ms": (0, 900_000),
    "max_in_flight_requests_per_connection": (1, 1_000_000),
    "metadata_max_age_ms": (1, 86_400_000),
    "reconnect_backoff_ms": (0, 3_600_000),
    "reconnect_backoff_max_ms": (0, 3_600_000),
    "retry_backoff_ms": (1, 300_000),
    "receive_buffer_bytes": (0, 100_000_000),
    "send_buffer_bytes": (0, 100_000_000),
    "fetch_max_bytes": (1000, 2_147_483_135),
    "max_partition_fetch_bytes": (1, 1_000_000_000),
    "max_request_size": (1000, 1_000_000_000),
    "request_timeout_ms": (10, 900_000),
}
# The bounds of socket.timeout.ms, which a request timeout also sets (clamped into them).
_RD_SOCKET_TIMEOUT = (10, 300_000)


# librdkafka's own SASL mechanisms; GSSAPI needs a librdkafka built with libsasl2 (the wheels'
# is not), OAUTHBEARER a token callback that kafka-python's token providers are not.
RDKAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def check_rdkafka(prefix: str, options: Mapping[str, Any]) -> None:
    """Refuse, at load, an option that librdkafka has no equivalent for, or a value outside
    its limits (``ConfigError`` naming it): with ``client_library: confluent`` every option
    must mean what it says, and no client may fail to build later."""
    mechanism = options.get("sasl_mechanism")
    if mechanism is not None and mechanism not in RDKAFKA_SASL_MECHANISMS:
        raise fail(
            f"{prefix}.sasl_mechanism",
            mechanism,
            "one of " + ", ".join(RDKAFKA_SASL_MECHANISMS) + " with client_library 'confluent'",
        )
    for name, value in options.items():
        low, high = RDKAFKA_RANGES.get(name, (0, 0))
        if name in RDKAFKA_RANGES and not low <= value <= high:
            raise fail(
                f"{prefix}.{name}",
                value,
                f"a value between {low} and {high} with client_library 'confluent' (librdkafka's "
                "limits)",
            )
        if name not in RDKAFKA_NAMES and name not in RDKAFKA_SPECIAL:
            field = COMMON.get(name) or PRODUCER.get(name) or CONSUMER.get(name)
            shown = value if field is not None else MASK  # unknown: may be a secret
            raise fail(
                f"{prefix}.{name}",
                shown,
                "no such option with client_library 'confluent' (librdkafka has no equivalent); "
                "remove it or use client_library 'kafka-python'",
                field,
            )


def rdkafka_config(options: Mapping[str, Any], role: str) -> dict[str, Any]:
    """librdkafka properties for kafka-python ``options`` of a ``producer`` or ``consumer``
    (as ``ClusterConfig`` builds them; secrets included: never log them). Options managed by
    the package (group, commits, resets) are left to the adapters; an option without an
    equivalent raises ``ValueError`` (``check_rdkafka`` refused it at load already)."""
    servers = options["bootstrap_servers"]  # kafka-python takes a list or one string
    conf: dict[str, Any] = {
        "bootstrap.servers": servers if isinstance(servers, str) else ",".join(servers)
    }
    for name, value in options.items():
        if name in MANAGED or name in ("max_poll_records", "api_version"):
            continue
        if name in RDKAFKA_NAMES:
            conf[RDKAFKA_NAMES[name]] = value.lower() if name == "security_protocol" else value
        elif name == "acks":
            conf["acks"] = str(value)
        elif name == "allow_auto_create_topics":  # a consumer property in librdkafka
            if role == "consumer":
                conf["allow.auto.create.topics"] = bool(value)
        elif name == "compression_type":
            conf["compression.type"] = value or "none"
        elif name == "ssl_check_hostname":
            conf["ssl.endpoint.identification.algorithm"] = "https" if value else "none"
        elif name == "request_timeout_ms":
            low, high = _RD_SOCKET_TIMEOUT
            conf["socket.timeout.ms"] = min(max(int(value), low), high)
            if role == "producer":
                conf["request.timeout.ms"] = int(value)
        else:
            raise ValueError(f"kafka-python option {name!r} has no librdkafka equivalent")
    return conf
