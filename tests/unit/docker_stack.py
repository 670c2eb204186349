"""The Docker stack (``docker/``) as the Docker tests see it: its files, the documented
``.env.example`` and its variants, and ``docker-compose config`` of every compose combination
(the ``rendered`` fixture in ``tests/unit/conftest.py``), checked without a Docker engine."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from workers.config.env import ORIGIN_CLUSTERS, ORIGIN_GROUP

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
ENV_EXAMPLE = DOCKER / ".env.example"
DOCKERFILE = DOCKER / "Dockerfile"

COMBOS = {
    "single": ("compose.yml",),
    "cluster": ("compose.yml", "compose.cluster.yml"),
}
PACKAGE_SERVICES = {"init", "worker", "consumer", "beat", "exporter"}
# The monitoring services, from upstream images.
MONITORING_SERVICES = {"prometheus", "grafana"}
# Names the configuration reads besides WORKERS_*: celeryconfig.py, workers/app.py, the origin's.
OTHER_READ = {
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    ORIGIN_GROUP,
    *(name for pair in ORIGIN_CLUSTERS.values() for name in pair),
}
CHANGED = {"WORKER_CONCURRENCY": "7", "TOPIC_PARTITIONS": "12"}

# -- .env.example ------------------------------------------------------------------------------

_ASSIGNMENT = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


def env_example() -> dict[str, tuple[str, bool]]:
    """name -> (value, set): ``set`` is False for a commented-out line."""
    found: dict[str, tuple[str, bool]] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = _ASSIGNMENT.match(line.strip())
        if m:
            found[m.group(2)] = (m.group(3), m.group(1) is None)
    return found


def write_env(path: Path, values: Mapping[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


VARIANTS: dict[str, Any] = {
    # The file as documented: cp docker/.env.example docker/.env
    "example": lambda: {k: v for k, (v, is_set) in env_example().items() if is_set},
    # No .env at all: the compose defaults alone.
    "defaults": lambda: {},
    # Every commented line switched on (SASL/TLS and the rest), and two values changed.
    "full": lambda: {**{k: v for k, (v, _) in env_example().items()}, **CHANGED},
}

# -- running docker-compose ----------------------------------------------------------------------


def compose_command() -> list[str] | None:
    exe = shutil.which("docker-compose")
    if exe:
        return [exe]
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    return None


def render_stack(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict[str, Any]]:
    """``docker-compose config`` of every combination and variant, run in parallel."""
    compose = compose_command()
    if compose is None:
        reason = (
            "neither docker-compose nor the docker compose plugin is installed "
            "(Debian: apt-get install docker-compose); the compose files were not checked"
        )
        if os.environ.get("CI"):  # as the integration tests: CI must not pass by skipping
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("compose")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp)}  # no shell variable leaks in

    def render(key: tuple[str, str]) -> tuple[tuple[str, str], Any]:
        combo, variant = key
        env_file = write_env(tmp / f"{combo}-{variant}.env", VARIANTS[variant]())
        files = [arg for name in COMBOS[combo] for arg in ("-f", str(DOCKER / name))]
        cmd = [*compose, "--project-directory", str(DOCKER), "--env-file", str(env_file)]
        proc = subprocess.run(
            [*cmd, *files, "--profile", "flower", "config"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        return key, proc

    keys = [(combo, variant) for combo in COMBOS for variant in VARIANTS]
    with ThreadPoolExecutor(max_workers=4) as pool:
        procs = dict(pool.map(render, keys))
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for key, proc in procs.items():
        assert proc.returncode == 0, f"docker-compose config {key} failed:\n{proc.stderr}"
        out[key] = yaml.safe_load(proc.stdout)
    return out


def services(rendered: Mapping[tuple[str, str], Any], combo: str, variant: str = "example") -> Any:
    return rendered[(combo, variant)]["services"]


def mount(volume: Any) -> tuple[str, str]:
    """(source, target) of a short ('name:/path:rw') or long (docker compose v2) volume."""
    if isinstance(volume, Mapping):
        return str(volume["source"]), str(volume["target"])
    source, target = str(volume).split(":")[:2]
    return source, target


def published(port: Any) -> tuple[str, int, int]:
    """(host address, host port, container port) of a short ('ip:host:container/tcp') or long
    (docker compose v2) port entry."""
    if isinstance(port, Mapping):
        return port.get("host_ip", ""), int(port["published"]), int(port["target"])
    ip, host, target = str(port).split("/")[0].rsplit(":", 2)
    return ip, int(host), int(target)


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """The variables a container gets: pass-through names left unset are not passed."""
    env = service.get("environment") or {}
    if isinstance(env, list):  # the list form, just in case
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: str(v) for k, v in env.items() if v is not None}
