"""kafka-python client options we pass through by their kafka-python names, with their checks.

Options known here are type-checked; any other option that the installed kafka-python accepts
for that role is passed through unchanged, so 2.2.x and 3.0.x each get exactly their own set.
Options that would break how offsets are managed (group ids, auto commit, serializers) are
refused at load.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from workers.config.fields import ABSENT, INT32_MAX, Field, at_least, choice, fail

SASL_MECHANISMS = ("PLAIN", "GSSAPI", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# Masked wherever options are shown; proxy URLs may carry credentials.
SECRET_OPTIONS = frozenset(
    {
        "sasl_plain_password",
        "ssl_password",
        "sasl_oauth_token_provider",
        "socks5_proxy",
        "proxy_url",
    }
)


_VERSION_PART = re.compile(r"[0-9]{1,4}")
_VERSION_FORM = "a broker version such as '2.8.0' or [2, 8, 0]"


def _api_version(key: str, value: Any) -> tuple[int, ...]:
    """kafka-python wants a tuple such as (2, 8, 0); accept "2.8.0", [2, 8, 0] or (2, 8)."""
    if isinstance(value, float) and math.isfinite(value):  # "2.8" from the environment
        value = repr(value)
    if isinstance(value, str):
        parts: list[Any] = value.split(".") if len(value) <= 20 else []
        ok = all(_VERSION_PART.fullmatch(p) for p in parts)
    elif isinstance(value, list | tuple):
        parts = list(value)
        ok = all(isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= 9999 for p in parts)
    else:
        parts, ok = [], False
    if not ok or not 2 <= len(parts) <= 3:
        raise fail(key, value, _VERSION_FORM)
    return tuple(int(p) for p in parts)


def _acks(key: str, value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1, -1):
        return value
    normal = None
    if isinstance(value, str):
        normal = {"0": 0, "1": 1, "-1": -1, "all": "all"}.get(value.lower())
    if normal is None:
        raise fail(key, value, "one of 0, 1, -1, 'all'")
    return normal


def Opt(kind: str, expected: str, **kwargs: Any) -> Field:  # noqa: N802 - reads as a type
    """A kafka-python option: absent unless configured, so kafka-python's default applies."""
    return Field(kind, expected, ABSENT, **kwargs)


# Kafka's own settings of these kinds are Java ints: nothing larger means anything to a broker
# or a client, and kafka-python would overflow on it at run time.
def _ms(low: int) -> Field:
    expected = f"milliseconds as an integer between {low} and {INT32_MAX}"
    return Opt("int", expected, check=at_least(low, INT32_MAX))


def _positive_int(what: str) -> Field:
    return Opt("int", f"{what} between 1 and {INT32_MAX}", check=at_least(1, INT32_MAX))


_PATH = Opt("str", "a file path")

COMMON: dict[str, Field] = {
    "security_protocol": Opt("str", "a security protocol", check=choice(*SECURITY_PROTOCOLS)),
    "sasl_mechanism": Opt("str", "a SASL mechanism", check=choice(*SASL_MECHANISMS)),
    "sasl_plain_username": Opt("str", "a user name"),
    "sasl_plain_password": Opt("str", "a password", secret=True),
    "sasl_kerberos_service_name": Opt("str", "a Kerberos service name"),
    "sasl_kerberos_domain_name": Opt("str", "a Kerberos domain name"),
    "sasl_oauth_token_provider": Opt("any", "a token provider object", secret=True),
    "ssl_cafile": _PATH,
    "ssl_certfile": _PATH,
    "ssl_keyfile": _PATH,
    "ssl_crlfile": _PATH,
    "ssl_password": Opt("str", "a key password", secret=True),
    "ssl_check_hostname": Opt("bool", "true or false"),
    "ssl_ciphers": Opt("str", "an OpenSSL cipher list"),
    # A request timeout of milliseconds makes every slow broker look dead.
    "request_timeout_ms": _ms(1000),
    "api_version": Opt("any", "a broker version such as '2.8.0'", check=_api_version),
    "client_id": Opt("str", "a client id"),
    "connections_max_idle_ms": _ms(1000),
    "metadata_max_age_ms": _ms(1000),
    "retry_backoff_ms": _ms(10),
    "reconnect_backoff_ms": _ms(10),
    "reconnect_backoff_max_ms": _ms(10),
    "receive_buffer_bytes": _positive_int("bytes as an integer"),
    "send_buffer_bytes": _positive_int("bytes as an integer"),
}

# Producer batches. With kafka-python's defaults (16 KiB, no linger) a producer starts a new
# record batch, and wakes its sender thread, every few dozen records: sending 500 alert
# changes then costs about 45 us of CPU per change. Batches of up to 256 KiB that wait up to
# 5 ms (Apache Kafka 4's linger default) cost about 25 us: every sender here flushes at the end
# of its records, and a flush sends at once whatever waits. Far below the 1 MB default limits
# of a request and of a broker's message.
LINGER_MS = 5
BATCH_BYTES = 256 * 1024

PRODUCER: dict[str, Field] = {
    "acks": Opt("any", "one of 0, 1, -1, 'all'", check=_acks),
    "linger_ms": Field(
        "int",
        f"milliseconds as an integer between 0 and {INT32_MAX}",
        LINGER_MS,
        check=at_least(0, INT32_MAX),
    ),  # fmt: skip
    "compression_type": Opt(
        "str", "a codec", check=choice("gzip", "snappy", "lz4", "zstd"), nullable=True
    ),
    "batch_size": Field(
        "int",
        f"bytes as an integer between 1 and {INT32_MAX}",
        BATCH_BYTES,
        check=at_least(1, INT32_MAX),
    ),  # fmt: skip
    "max_request_size": _positive_int("bytes as an integer"),
    "retries": Opt("int", f"an integer between 0 and {INT32_MAX}", check=at_least(0, INT32_MAX)),
    "enable_idempotence": Opt("bool", "true or false"),
    "max_in_flight_requests_per_connection": _positive_int("an integer"),
    "delivery_timeout_ms": _ms(1000),
}

# The most a consumer asks a broker for in one fetch. kafka-python's default, 50 MB, lets every
# worker process hold tens of MB of fetched records (a broker may answer with far more than a
# pull hands off at once); 2 MiB bounds that for about 3% of the pull's throughput (a record
# batch larger than this is still fetched: brokers always return the first one whole).
FETCH_MAX_BYTES = 2 * 1024 * 1024
# How long a broker may hold a fetch that found nothing new. kafka-python's default, 500 ms, is
# added to the latency of a record that arrives while a fetch waits on a broker that holds it
# (the embedded test broker does): long-lived p50 at 1,000 events/s was 249 ms with 500 and
# 96 ms with 20. 100 ms costs an idle consumer ten empty fetches a second.
FETCH_MAX_WAIT_MS = 100

CONSUMER: dict[str, Field] = {
    "max_partition_fetch_bytes": _positive_int("bytes as an integer"),
    "fetch_max_bytes": Field(
        "int",
        f"bytes as an integer between 1 and {INT32_MAX}",
        FETCH_MAX_BYTES,
        check=at_least(1, INT32_MAX),
    ),  # fmt: skip
    "fetch_min_bytes": _positive_int("bytes as an integer"),
    "fetch_max_wait_ms": Field(
        "int",
        f"milliseconds as an integer between 0 and {INT32_MAX}",
        FETCH_MAX_WAIT_MS,
        check=at_least(0, INT32_MAX),
    ),  # fmt: skip
    "max_poll_records": _positive_int("an integer"),
    "check_crcs": Opt("bool", "true or false"),
    "isolation_level": Opt(
        "str", "an isolation level", check=choice("read_uncommitted", "read_committed")
    ),
}

# Set by the package itself: letting a config override them would break offset management.
MANAGED = frozenset(
    {
        "bootstrap_servers",
        "group_id",
        "enable_auto_commit",
        "auto_offset_reset",
        "key_deserializer",
        "value_deserializer",
        "key_serializer",
        "value_serializer",
        "kafka_client",
    }
)

PRODUCER_NAMES = frozenset(KafkaProducer.DEFAULT_CONFIG)
CONSUMER_NAMES = frozenset(KafkaConsumer.DEFAULT_CONFIG)
COMMON_NAMES = PRODUCER_NAMES & CONSUMER_NAMES

# Keep only what the installed kafka-python accepts (delivery_timeout_ms is 3.x only, ...).
COMMON = {k: v for k, v in COMMON.items() if k in COMMON_NAMES}
PRODUCER = {k: v for k, v in PRODUCER.items() if k in PRODUCER_NAMES}
CONSUMER = {k: v for k, v in CONSUMER.items() if k in CONSUMER_NAMES}


def passthrough(role: str) -> Callable[[str], bool]:
    """``extra_ok`` for ``check_mapping``: options the installed kafka-python knows for a role."""
    names = {"common": COMMON_NAMES, "producer": PRODUCER_NAMES, "consumer": CONSUMER_NAMES}[role]

    def _ok(name: str) -> bool:
        return name in names and name not in MANAGED

    return _ok
