"""The metrics settings: off by default, validated like every top-level key, overridable from
the environment; a bad value is one line naming the key."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.config_support import load_error, minimal_conf
from workers.config import MetricsSettings, load_settings


def test_metrics_are_off_by_default() -> None:
    assert load_settings(minimal_conf(), {}).metrics == MetricsSettings(None, "0.0.0.0", None)


def test_the_config_and_the_environment_set_them() -> None:
    conf = {**minimal_conf(), "workers_metrics_port": 9100, "workers_metrics_dir": "/var/m"}
    env = {"WORKERS_METRICS_PORT": "9200", "WORKERS_METRICS_ADDRESS": "::1"}

    assert load_settings(conf, {}).metrics == MetricsSettings(9100, "0.0.0.0", "/var/m")
    assert load_settings(conf, env).metrics == MetricsSettings(9200, "::1", "/var/m")
    assert load_settings(conf, {"WORKERS_METRICS_PORT": "none"}).metrics.port is None


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "0.0.0.0", "::", "fe80::1", "localhost", "metrics.internal-1.example"]
)
def test_addresses_and_host_names_are_accepted(address: str) -> None:
    conf = {**minimal_conf(), "workers_metrics_address": address}

    assert load_settings(conf, {}).metrics.address == address


@pytest.mark.parametrize(
    ("key", "value", "env", "message"),
    [
        ("workers_metrics_port", 0, {}, "workers_metrics_port: got 0; expected a value between "
         "1 and 65535"),
        ("workers_metrics_port", 65536, {}, "workers_metrics_port: got 65536; expected a value "
         "between 1 and 65535"),
        ("workers_metrics_port", "9100", {}, "workers_metrics_port: got '9100'; expected a TCP "
         "port between 1 and 65535, or None for no metrics endpoint"),
        ("workers_metrics_port", True, {}, "workers_metrics_port: got True; expected a TCP port "
         "between 1 and 65535, or None for no metrics endpoint"),
        (None, None, {"WORKERS_METRICS_PORT": "http"}, "WORKERS_METRICS_PORT: got 'http'; "
         "expected a TCP port between 1 and 65535, or None for no metrics endpoint"),
        (None, None, {"WORKERS_METRICS_PORT": "70000"}, "workers_metrics_port (from "
         "WORKERS_METRICS_PORT): got 70000; expected a value between 1 and 65535"),
        ("workers_metrics_address", "bad host!", {}, "workers_metrics_address: got 'bad "
         "host!'; expected an IP address (0.0.0.0, ::, 127.0.0.1) or a host name"),
        ("workers_metrics_address", None, {}, "workers_metrics_address: got None; expected an "
         "IP address or host name to listen on"),
        ("workers_metrics_dir", "metrics", {}, "workers_metrics_dir: got 'metrics'; expected "
         "an absolute directory path other than '/', or None"),
        ("workers_metrics_dir", "/", {}, "workers_metrics_dir: got '/'; expected an absolute "
         "directory path other than '/', or None"),
        (None, None, {"WORKERS_METRICS_DIR": "./m"}, "workers_metrics_dir (from "
         "WORKERS_METRICS_DIR): got './m'; expected an absolute directory path other than '/', "
         "or None"),
        ("workers_metrics_dir", "/var/m\n", {}, "workers_metrics_dir: got '/var/m\\n'; "
         "expected an absolute directory path, or None for a fresh temporary directory per "
         "worker (at most 4096 characters, no control characters)"),
    ],
)  # fmt: skip
def test_a_bad_value_is_one_line_naming_the_key(
    key: str | None, value: Any, env: dict[str, str], message: str
) -> None:
    conf = minimal_conf() if key is None else {**minimal_conf(), key: value}

    error = load_error(conf, env)

    assert str(error) == message
    assert "\n" not in str(error)
