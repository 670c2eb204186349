"""Every variable the Docker stack gives the package's containers is read by the
configuration: ``celeryconfig.py`` plus ``workers.config.load_settings`` accept it, apply it to
a setting of an existing cluster or pipeline, and a misspelt one fails the check."""

from __future__ import annotations

import os
import re
import runpy
import types
from collections.abc import Mapping
from typing import Any
from unittest import mock

import pytest

from tests.unit.docker_stack import (
    COMBOS,
    OTHER_READ,
    PACKAGE_SERVICES,
    ROOT,
    VARIANTS,
    environment,
    services,
)
from workers.config import Settings, load_settings
from workers.config.env import apply_env
from workers.exceptions import ConfigError

SSL_FILE_SUFFIXES = ("_SSL_CAFILE", "_SSL_CERTFILE", "_SSL_KEYFILE", "_SSL_CRLFILE")


def celeryconfig(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings of celeryconfig.py as a process with exactly ``environ`` would see them."""
    with mock.patch.dict(os.environ, environ, clear=True):
        namespace = runpy.run_path(str(ROOT / "celeryconfig.py"))
    return {
        k: v
        for k, v in namespace.items()
        if re.fullmatch(r"[a-z][a-z0-9_]*", k)
        and k != "annotations"
        and not isinstance(v, types.ModuleType)
    }


def check_environment(environ: Mapping[str, str]) -> Settings:
    """Fail unless every variable is read by the configuration and the settings load.

    The package itself ignores an unknown top-level ``WORKERS_*`` name, and a misspelt cluster
    or pipeline name creates a new one; both are caught here.
    """
    unknown = sorted(v for v in environ if not v.startswith("WORKERS_") and v not in OTHER_READ)
    assert not unknown, f"read by nothing: {unknown}"
    conf = celeryconfig(environ)
    ours = {k: v for k, v in conf.items() if k.startswith("workers_")}
    _, sources = apply_env(ours, environ)
    applied = {part for var in sources.values() for part in var.split("/")}
    unapplied = sorted(
        v
        for v in environ
        if v.startswith("WORKERS_") and v != "WORKERS_CELERY_CONFIG" and v not in applied
    )
    assert not unapplied, f"ignored by the configuration (misspelt?): {unapplied}"
    if "WORKERS_CELERY_CONFIG" in environ:
        assert re.fullmatch(r"[A-Za-z_][\w.]*", environ["WORKERS_CELERY_CONFIG"])
    settings = load_settings(conf, environ)  # raises ConfigError on a bad name or value
    baseline = load_settings(celeryconfig({}), {})
    assert set(settings.clusters) == set(baseline.clusters), "a variable names no known cluster"
    assert set(settings.pipelines) == set(baseline.pipelines), "a variable names no pipeline"
    if "CELERY_BROKER_URL" in environ:
        assert conf["broker_url"] == environ["CELERY_BROKER_URL"]
    if "CELERY_RESULT_BACKEND" in environ:
        assert conf["result_backend"] == environ["CELERY_RESULT_BACKEND"]
    return settings


@pytest.fixture(scope="module")
def stand_in_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Certificate paths name files inside the container; this file stands in for them."""
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    path.write_text("not a certificate: only its existence is checked at load\n")
    return str(path)


def container_environ(service: Mapping[str, Any], stand_in: str) -> dict[str, str]:
    env = environment(service)
    for var, value in env.items():
        if var.endswith(SSL_FILE_SUFFIXES):
            assert value.startswith("/"), f"{var}: not an absolute path in the container"
            env[var] = stand_in
    return env


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("combo", COMBOS)
def test_package_environment_is_read_by_the_configuration(
    rendered: Any, stand_in_file: str, combo: str, variant: str
) -> None:
    for name in PACKAGE_SERVICES:
        environ = container_environ(services(rendered, combo, variant)[name], stand_in_file)
        settings = check_environment(environ)
        assert settings.redis.url == "redis://redis:6379/1"
        assert environ["CELERY_BROKER_URL"] == "redis://redis:6379/0"
        assert settings.pipelines["alarms"].queue == "alarms"
        if variant == "full":
            alert = settings.clusters["alert"]
            assert alert.client["security_protocol"] == "SASL_SSL"
            assert alert.client["ssl_check_hostname"] is True


BASE_ENV = {
    "CELERY_BROKER_URL": "redis://redis:6379/0",
    "WORKERS_REDIS_URL": "redis://redis:6379/1",
    "WORKERS_KAFKA_ALERT_BOOTSTRAP_SERVERS": "kafka:19092",
}


def test_a_correct_environment_passes_the_check() -> None:
    check_environment(BASE_ENV)


@pytest.mark.parametrize(
    "typo",
    [
        {"WORKERS_REDIS_URLL": "redis://redis:6379/1"},  # the package ignores it silently
        {"WORKERS_KAFKA_ALERT_BOOTSTRAP_SERVER": "kafka:19092"},  # unknown setting
        {"WORKERS_KAFKA_ALRET_BOOTSTRAP_SERVERS": "kafka:19092"},  # would add a cluster
        {"WORKERS_PIPELINE_ALARM_QUEUE": "alarms"},  # would add a pipeline
        {"WORKERS_PIPELINE_ALARMS_QUEU": "alarms"},
        {"CELERY_BROKER": "redis://redis:6379/0"},
        {"KAFKA_HOSTS": "kafka"},
    ],
    ids=lambda typo: next(iter(typo)),
)
def test_a_misspelt_variable_fails_the_check(typo: dict[str, str]) -> None:
    with pytest.raises((AssertionError, ConfigError)):
        check_environment({**BASE_ENV, **typo})
