"""The compose files of the Docker stack render with ``docker-compose config`` (with the
documented ``.env.example``, with no env file at all, and with every commented line of it
switched on), and the rendered stack has the promised shape: health checks, dependencies,
volumes, listeners, no fixed names or worker ports."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.docker_stack import (
    COMBOS,
    DOCKER,
    MONITORING_SERVICES,
    OTHER_READ,
    PACKAGE_SERVICES,
    ROOT,
    VARIANTS,
    env_example,
    environment,
    mount,
    published,
    services,
)


def conditions(service: Mapping[str, Any]) -> dict[str, str]:
    return {name: dep["condition"] for name, dep in (service.get("depends_on") or {}).items()}


def raw_compose(name: str) -> Any:
    """A compose file as written (YAML merge keys resolved), before any interpolation."""
    return yaml.safe_load((DOCKER / name).read_text())


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("combo", COMBOS)
def test_compose_config_renders(rendered: Any, combo: str, variant: str) -> None:
    kafkas = {"kafka"} if combo == "single" else {"kafka", "kafka-2", "kafka-3"}
    assert set(services(rendered, combo, variant)) == {
        "redis",
        "flower",
        *kafkas,
        *PACKAGE_SERVICES,
        *MONITORING_SERVICES,
    }


@pytest.mark.parametrize("combo", COMBOS)
def test_stack_shape(rendered: Any, combo: str) -> None:
    svc = services(rendered, combo)
    declared_volumes = set(rendered[(combo, "example")].get("volumes") or {})
    # --scale worker=3: no fixed container names anywhere, no published port on the workers.
    assert not [name for name, s in svc.items() if "container_name" in s]
    assert "ports" not in svc["worker"]
    # The package's containers: one image, built from this tree with docker/Dockerfile.
    built = {name for name, s in svc.items() if "build" in s}
    assert built == PACKAGE_SERVICES
    assert len({svc[name]["image"] for name in built}) == 1
    for name in built:
        assert Path(svc[name]["build"]["context"]).resolve() == ROOT
        assert svc[name]["build"]["dockerfile"] == "docker/Dockerfile"
    # Health checks on the services others wait for; init is a one-shot without one.
    kafkas = [name for name in svc if name.startswith("kafka")]
    for name in [*kafkas, "redis"]:
        assert svc[name]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    assert svc["init"]["healthcheck"]["test"] == ["NONE"]
    assert svc["init"]["restart"] == "no"
    # Start order by condition, not by mere start.
    assert conditions(svc["init"]) == {k: "service_healthy" for k in kafkas}
    for name in ("worker", "beat", "exporter"):
        assert conditions(svc[name]) == {
            "redis": "service_healthy",
            "init": "service_completed_successfully",
        }
    # Redis: append-only file on a named volume, so offsets survive a restart.
    command = svc["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    mounts = {target: source for source, target in map(mount, svc["redis"]["volumes"])}
    assert mounts["/data"] in declared_volumes
    # Each broker keeps its log on a volume of its own.
    logs = [mount(svc[k]["volumes"][0])[0] for k in kafkas]
    assert len(set(logs)) == len(kafkas) and set(logs) <= declared_volumes
    # Flower only on request.
    assert svc["flower"]["profiles"] == ["flower"]


def listeners(text: str) -> dict[str, tuple[str, int]]:
    out = {}
    for item in text.split(","):
        name, _, address = item.partition("://")
        host, _, port = address.rpartition(":")
        out[name] = (host, int(port))
    return out


@pytest.mark.parametrize("combo", COMBOS)
def test_kafka_listeners_and_quorum(rendered: Any, combo: str) -> None:
    svc = services(rendered, combo)
    kafkas = {name: environment(s) for name, s in svc.items() if name.startswith("kafka")}
    voters = {f"{env['KAFKA_NODE_ID']}@{name}:9093" for name, env in kafkas.items()}
    assert len(voters) == len(kafkas)  # distinct node ids
    for name, env in kafkas.items():
        assert set(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == voters, name
        bound = listeners(env["KAFKA_LISTENERS"])
        advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
        # Containers reach a broker by its service name; the host through its published port.
        assert advertised["INTERNAL"] == (name, bound["INTERNAL"][1])
        (ip, host_port, target) = published(svc[name]["ports"][0])
        assert ip == "127.0.0.1" and target == bound["EXTERNAL"][1]
        assert advertised["EXTERNAL"] == ("localhost", host_port)
        assert "CONTROLLER" in bound and "CONTROLLER" not in advertised
        assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "INTERNAL"
        assert int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == len(kafkas)
    cluster_ids = {env["CLUSTER_ID"] for env in kafkas.values()}
    assert len(cluster_ids) == 1 and re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_ids.pop())
    ports = [published(svc[name]["ports"][0])[1] for name in kafkas]
    assert len(set(ports)) == len(ports)
    # The package's containers bootstrap from every broker's INTERNAL listener.
    internal = {
        f"{name}:{listeners(env['KAFKA_LISTENERS'])['INTERNAL'][1]}" for name, env in kafkas.items()
    }
    for name in PACKAGE_SERVICES:
        env = environment(svc[name])
        for var in (
            "WORKERS_KAFKA_COMMON_BOOTSTRAP_SERVERS",
            "WORKERS_KAFKA_ALERT_BOOTSTRAP_SERVERS",
        ):
            assert set(env[var].split(",")) == internal, (name, var)
    # Topics get one replica per broker: 1, or 3 with the cluster file.
    command = svc["init"]["command"]
    assert command[:3] == ["workers", "topics", "create"]
    assert command[command.index("--replication-factor") + 1] == str(len(kafkas))


def test_settings_from_the_env_file_reach_the_commands(rendered: Any) -> None:
    for combo in COMBOS:
        svc = services(rendered, combo, "full")
        assert "--concurrency=7" in svc["worker"]["command"]
        assert "--pool=prefork" in svc["worker"]["command"]
        command = svc["init"]["command"]
        assert command[command.index("--partitions") + 1] == "12"


def test_env_example_matches_the_compose_files(rendered: Any) -> None:
    example = env_example()
    text = "\n".join((DOCKER / name).read_text() for name in COMBOS["cluster"])
    defaults: dict[str, set[str]] = {}
    for name, default in re.findall(r"\$\{([A-Z][A-Z0-9_]*)(?::-([^}]*))?\}", text):
        defaults.setdefault(name, set()).add(default)
    passed_through = {  # `NAME:` with no value: passed on only when set
        var
        for name in COMBOS["cluster"]
        for s in raw_compose(name)["services"].values()
        for var, value in (s.get("environment") or {}).items()
        if value is None
    }
    used = set(defaults) | passed_through
    assert sorted(used - set(example)) == [], "used by the compose files, not in .env.example"
    assert sorted(set(example) - used - {"COMPOSE_PROJECT_NAME"}) == [], "documented, unused"
    for name, (value, is_set) in example.items():
        if is_set and name in defaults:
            assert defaults[name] == {value}, f"{name}: .env.example says {value!r}"
    # Every documented line, switched on, reaches the package's containers unchanged.
    package_vars = {k for k in example if k.startswith("WORKERS_") or k in OTHER_READ}
    for combo in COMBOS:
        for name in PACKAGE_SERVICES:
            env = environment(services(rendered, combo, "full")[name])
            for var in package_vars:
                assert env.get(var) == example[var][0], (combo, name, var)
