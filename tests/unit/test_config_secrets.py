"""Secret options of ``workers.config``: never shown by a repr or a helper, yet handed to the
Kafka clients as configured, with every other option."""

from __future__ import annotations

import ssl
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.unit.config_support import REDIS_URL, SECRET, A, C, conf_with
from workers.config import load_settings, mask_options, mask_url
from workers.config.kafka_options import (
    BATCH_BYTES,
    FETCH_MAX_BYTES,
    FETCH_MAX_WAIT_MS,
    LINGER_MS,
)

# -- secrets -----------------------------------------------------------------------------------


class TokenProvider:
    def token(self) -> str:
        return SECRET

    def __repr__(self) -> str:
        return f"TokenProvider({SECRET})"


def secret_conf(tmp_path: Path) -> dict[str, Any]:
    """A SASL_SSL cluster with every secret option set, and files for every ssl path."""
    files = {}
    for name in ("ca", "cert", "key", "crl"):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_text("x")
    return conf_with(
        (f"{C}.security_protocol", "SASL_SSL"),
        (f"{C}.sasl_mechanism", "SCRAM-SHA-512"),
        (f"{C}.ssl_cafile", str(files["ca"])),
        (f"{C}.ssl_certfile", str(files["cert"])),
        (f"{C}.ssl_keyfile", str(files["key"])),
        (f"{C}.ssl_crlfile", str(files["crl"])),
        (f"{C}.ssl_password", SECRET),
        (f"{C}.ssl_check_hostname", False),
        (f"{C}.ssl_ciphers", "ECDHE+AESGCM"),
        (f"{C}.client_id", "workers-test"),
        (f"{C}.producer.acks", "all"),
        (f"{C}.producer.sasl_plain_password", SECRET),
        (f"{C}.consumer.max_poll_records", 100),
        (f"{C}.consumer.client_id", "workers-consumer"),
        (f"{A}.security_protocol", "SASL_SSL"),
        (f"{A}.sasl_mechanism", "OAUTHBEARER"),
        (f"{A}.sasl_oauth_token_provider", TokenProvider()),
    )


def test_reprs_never_show_a_secret(tmp_path: Path) -> None:
    # Arrange
    settings = load_settings(secret_conf(tmp_path), {})

    # Act
    texts = {
        "settings": repr(settings),
        "str": str(settings),
        "common": repr(settings.cluster("common")),
        "alert": repr(settings.cluster("alert")),
        "redis": repr(settings.redis),
    }

    # Assert
    assert {name: SECRET in text for name, text in texts.items()} == dict.fromkeys(texts, False)
    assert "sasl_plain_password': '***'" in texts["common"]
    assert "ssl_password': '***'" in texts["common"]
    assert "sasl_oauth_token_provider': '***'" in texts["alert"]
    assert "redis://:***@redis.example:6379/0" in texts["redis"]


def test_client_options_carry_every_option_as_configured(tmp_path: Path) -> None:
    # Arrange
    conf = secret_conf(tmp_path)
    cluster_conf = conf["workers_kafka_clusters"]["common"]
    configured = {
        k: v
        for k, v in cluster_conf.items()
        if k not in ("bootstrap_servers", "producer", "consumer")
    }
    common = load_settings(conf, {}).cluster("common")

    # Act
    producer = common.producer_options()
    consumer = common.consumer_options()
    admin = common.admin_options()

    # Assert
    servers = {"bootstrap_servers": ["kafka-1:9092", "kafka-2:9092"]}
    assert admin == {**servers, **configured}
    assert producer == {
        **servers,
        **configured,
        "acks": "all",
        "sasl_plain_password": SECRET,
        "linger_ms": LINGER_MS,
        "batch_size": BATCH_BYTES,
    }
    assert consumer == {
        **servers,
        **configured,
        "enable_auto_commit": False,
        "group_id": None,
        "auto_offset_reset": "none",
        "allow_auto_create_topics": False,  # reading never creates a topic
        "max_poll_records": 100,
        "client_id": "workers-consumer",
        "fetch_max_bytes": FETCH_MAX_BYTES,
        "fetch_max_wait_ms": FETCH_MAX_WAIT_MS,
    }


def test_mask_helpers() -> None:
    # Arrange
    options = {"sasl_plain_password": SECRET, "ssl_password": "", "client_id": "c"}

    # Act
    masked = mask_options(options)

    # Assert
    assert masked == {"sasl_plain_password": "***", "ssl_password": "", "client_id": "c"}
    assert mask_url(REDIS_URL) == "redis://:***@redis.example:6379/0"
    assert mask_url(f"rediss://user:{SECRET}@h:6380/1") == "rediss://user:***@h:6380/1"
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"
    assert mask_url(f"redis://:{SECRET}@[::1/0") == "redis://:***@[::1/0"


# -- known bugs ----------------------------------------------------------------------------------


class LockedTokenProvider:
    def __init__(self) -> None:
        self._lock = threading.Lock()

    def token(self) -> str:
        return SECRET


@pytest.mark.parametrize(
    ("protocol", "key", "make"),
    [
        pytest.param("SASL_SSL", "sasl_oauth_token_provider", TokenProvider, id="provider"),
        pytest.param("SASL_SSL", "sasl_oauth_token_provider", LockedTokenProvider, id="locked"),
        pytest.param("SSL", "ssl_context", ssl.create_default_context, id="ssl-context"),
    ],
)
def test_regression_object_options_reach_the_clients_as_configured(
    protocol: str, key: str, make: Any
) -> None:
    # Arrange
    value = make()
    conf = conf_with((f"{A}.security_protocol", protocol), (f"{A}.{key}", value))
    if protocol.startswith("SASL_"):
        conf["workers_kafka_clusters"]["alert"]["sasl_mechanism"] = "OAUTHBEARER"

    # Act
    alert = load_settings(conf, {}).cluster("alert")

    # Assert
    assert alert.producer_options()[key] is value
    assert alert.consumer_options()[key] is value
