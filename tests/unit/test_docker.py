"""The Docker stack (``docker/``), checked without a Docker engine.

1. Every compose file and combination renders with ``docker-compose config`` (with the
   documented ``.env.example``, with no env file at all, and with every commented line of it
   switched on), and the rendered stack has the promised shape: health checks, dependencies,
   volumes, listeners, no fixed names or worker ports.
2. Every variable the stack gives the package's containers is read by the configuration:
   ``celeryconfig.py`` plus ``workers.config.load_settings`` accept it, apply it to a setting of
   an existing cluster or pipeline, and a misspelt one fails the check.
3. Every command the package's containers run is a real entry point of the installed package,
   and every option it passes is one that entry point lists in ``--help``.
4. The Dockerfile: slim multi-stage build, runtime dependencies only, non-root, a health check,
   and a build context (``Dockerfile.dockerignore``) that holds what the image copies.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import time
import types
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

from workers.config import Settings, load_settings
from workers.config.env import ORIGIN_CLUSTERS, ORIGIN_GROUP, apply_env
from workers.exceptions import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
ENV_EXAMPLE = DOCKER / ".env.example"
DOCKERFILE = DOCKER / "Dockerfile"
DOCKERIGNORE = DOCKER / "Dockerfile.dockerignore"
BIN = Path(sys.executable).parent  # the venv's console scripts: celery, workers

COMBOS = {
    "single": ("compose.yml",),
    "cluster": ("compose.yml", "compose.cluster.yml"),
}
PACKAGE_SERVICES = {"init", "worker", "consumer", "beat"}
# Names the configuration reads besides WORKERS_*: celeryconfig.py, workers/app.py, the origin's.
OTHER_READ = {
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    ORIGIN_GROUP,
    *(name for pair in ORIGIN_CLUSTERS.values() for name in pair),
}
SSL_FILE_SUFFIXES = ("_SSL_CAFILE", "_SSL_CERTFILE", "_SSL_KEYFILE", "_SSL_CRLFILE")
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

# -- running docker-compose and the entry points -----------------------------------------------


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


def clean_env() -> dict[str, str]:
    """The environment for subprocesses without any variable the configuration reads, so the
    shell of whoever runs the tests cannot change what is checked."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WORKERS_", "CELERY_")) and k not in OTHER_READ
    }


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict[str, Any]]:
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


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """The variables a container gets: pass-through names left unset are not passed."""
    env = service.get("environment") or {}
    if isinstance(env, list):  # the list form, just in case
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: str(v) for k, v in env.items() if v is not None}


def mount(volume: Any) -> tuple[str, str]:
    """(source, target) of a short ('name:/path:rw') or long (docker compose v2) volume."""
    if isinstance(volume, Mapping):
        return str(volume["source"]), str(volume["target"])
    source, target = str(volume).split(":")[:2]
    return source, target


def conditions(service: Mapping[str, Any]) -> dict[str, str]:
    return {name: dep["condition"] for name, dep in (service.get("depends_on") or {}).items()}


def raw_compose(name: str) -> Any:
    """A compose file as written (YAML merge keys resolved), before any interpolation."""
    return yaml.safe_load((DOCKER / name).read_text())


def published(port: Any) -> tuple[str, int, int]:
    """(host address, host port, container port) of a short ('ip:host:container/tcp') or long
    (docker compose v2) port entry."""
    if isinstance(port, Mapping):
        return port.get("host_ip", ""), int(port["published"]), int(port["target"])
    ip, host, target = str(port).split("/")[0].rsplit(":", 2)
    return ip, int(host), int(target)


# -- 1. the compose files render and have the promised shape ----------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("combo", COMBOS)
def test_compose_config_renders(rendered: Any, combo: str, variant: str) -> None:
    kafkas = {"kafka"} if combo == "single" else {"kafka", "kafka-2", "kafka-3"}
    assert set(services(rendered, combo, variant)) == {
        "redis",
        "flower",
        *kafkas,
        *PACKAGE_SERVICES,
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
    for name in ("worker", "beat"):
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


# -- 2. every variable given to the package's containers is read by the configuration ----------


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


# -- 3. every command is a real entry point, with options it lists -----------------------------

# Options of the programs themselves (before the sub-command) that take a value.
GLOBAL_WITH_VALUE = {"-A", "--app", "-b", "--broker", "--config", "--timeout", "--workdir"}


def split_command(argv: list[str]) -> tuple[list[str], list[str], list[str]]:
    """``celery -A workers.app worker --pool=prefork`` -> (global options, sub-command words,
    the sub-command's options and values)."""
    rest, options, words = argv[1:], [], []
    while rest and rest[0].startswith("-"):
        token = rest.pop(0)
        options.append(token)
        if "=" not in token and token in GLOBAL_WITH_VALUE:
            options.append(rest.pop(0))
    while rest and not rest[0].startswith("-"):
        words.append(rest.pop(0))
    return options, words, rest


def option_names(tokens: list[str]) -> list[str]:
    return [t.split("=", 1)[0] for t in tokens if t.startswith("-") and len(t) > 1]


def dockerfile_commands() -> dict[str, list[str]]:
    instructions = [i for stage in dockerfile_stages()[-1:] for i in stage]
    commands = {}
    for keyword, args in instructions:
        if keyword == "CMD":
            commands["Dockerfile CMD"] = json.loads(args)
        elif keyword == "HEALTHCHECK":
            shell = args.split(" CMD ", 1)[1]
            commands["Dockerfile HEALTHCHECK"] = shlex.split(shell.split("||")[0])
    return commands


_HELP: dict[tuple[str, ...], subprocess.CompletedProcess[str]] = {}


def help_outputs(cmds: set[tuple[str, ...]]) -> dict[tuple[str, ...], Any]:
    """Run each ``--help`` command once (in parallel), in the venv, from the repository root
    (the image has celeryconfig.py in its working directory too)."""

    def run(cmd: tuple[str, ...]) -> None:
        exe = str(BIN / cmd[0]) if (BIN / cmd[0]).exists() else shutil.which(cmd[0])
        assert exe, f"{cmd[0]}: console script missing (is the package installed?)"
        _HELP[cmd] = subprocess.run(
            [exe, *cmd[1:]], capture_output=True, text=True, cwd=ROOT, env=clean_env(), timeout=60
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(run, sorted(cmds - set(_HELP))))
    return {cmd: _HELP[cmd] for cmd in cmds}


def check_commands(commands: Mapping[str, list[str]]) -> None:
    """Each command is ``celery`` or ``workers`` with a sub-command whose ``--help`` exits 0 and
    lists every option the command passes (global options: the program's own ``--help``)."""
    checks = []
    for where, argv in commands.items():
        assert argv[0] in ("celery", "workers"), f"{where}: not an entry point: {argv}"
        options, words, rest = split_command(argv)
        checks.append((where, (argv[0], "--help"), options))
        checks.append((where, (argv[0], *options, *words, "--help"), rest))
    helps = help_outputs({cmd for _, cmd, _ in checks})
    problems = []
    for where, cmd, tokens in checks:
        proc = helps[cmd]
        if proc.returncode != 0:
            tail = proc.stderr.strip()[-400:]
            problems.append(f"{where}: `{' '.join(cmd)}` exited {proc.returncode}: {tail}")
            continue
        for name in option_names(tokens):
            if not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", proc.stdout):
                problems.append(f"{where}: {name} is not an option of `{' '.join(cmd)}`")
    assert not problems, "\n".join(problems)


def test_dockerfile_commands_are_entry_points() -> None:
    commands = dockerfile_commands()
    assert set(commands) == {"Dockerfile CMD", "Dockerfile HEALTHCHECK"}
    check_commands(commands)


def test_compose_commands_are_entry_points(rendered: Any) -> None:
    commands = {}
    for combo in COMBOS:
        for name in sorted(PACKAGE_SERVICES):
            service = services(rendered, combo)[name]
            commands[f"{combo} {name} command"] = list(service["command"])
            test = service.get("healthcheck", {}).get("test", ["NONE"])
            if test[0] == "CMD" and test[1] != "python":  # beat's check: tested below
                commands[f"{combo} {name} healthcheck"] = test[1:]
            elif test[0] == "CMD-SHELL":
                commands[f"{combo} {name} healthcheck"] = shlex.split(test[1])
    check_commands(commands)


def test_beat_healthcheck_watches_the_schedule_file(rendered: Any, tmp_path: Path) -> None:
    beat = services(rendered, "single")["beat"]
    schedule = next(a.split("=", 1)[1] for a in beat["command"] if a.startswith("--schedule="))
    test = beat["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    code = test[3]
    folder = os.path.dirname(schedule) + "/"
    assert f"'{schedule}*'" in code
    # The image creates that folder for the app user.
    assert f"chown workers:workers {os.path.dirname(schedule)}" in DOCKERFILE.read_text()
    local = code.replace(folder, f"{tmp_path}/")

    def healthy() -> bool:
        return subprocess.run([sys.executable, "-c", local], timeout=30).returncode == 0

    assert not healthy()  # beat never started
    stored = tmp_path / (os.path.basename(schedule) + ".db")
    stored.write_bytes(b"")
    assert healthy()
    stale = time.time() - 11 * 60
    os.utime(stored, (stale, stale))
    assert not healthy()  # beat stopped syncing


# -- 4. the Dockerfile ----------------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """Instructions per stage as (KEYWORD, arguments); continuations joined, comments dropped.
    ARG defaults given before the first FROM are substituted in FROM lines."""
    instructions, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, args = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), " ".join(args.split())))
        pending = ""
    args: dict[str, str] = {}
    stages: list[list[tuple[str, str]]] = []
    for keyword, text in instructions:
        if keyword == "ARG" and not stages and "=" in text:
            name, value = text.split("=", 1)
            args[name] = value
        elif keyword == "FROM":
            stages.append([(keyword, re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], text))])
        elif stages:
            stages[-1].append((keyword, text))
    return stages


def runs(stage: list[tuple[str, str]]) -> str:
    return "\n".join(args for keyword, args in stage if keyword == "RUN")


def test_dockerfile_builds_in_stages_on_slim_python() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    for stage in stages:
        image = stage[0][1].split()[0]
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?", image), image
    build, final = stages[0], stages[-1]
    build_name = build[0][1].split()[-1]
    assert re.search(r"apt-get install .*\bgcc\b", runs(build)), "no compiler for crc32c"
    assert not re.search(r"\b(gcc|build-essential|apt-get install)\b", runs(final))
    assert any(k == "COPY" and f"--from={build_name}" in a for k, a in final)
    # crc32c's C extension must be importable, or kafka-python silently checks CRCs in Python.
    assert "import crc32c" in runs(build)


def test_dockerfile_installs_the_package_without_extras() -> None:
    text = DOCKERFILE.read_text()
    assert "[test" not in text and "[dev" not in text
    installs = [
        line for line in re.split(r"&&|;|\n", runs(dockerfile_stages()[0])) if "pip install" in line
    ]
    assert installs, "the package is not installed"
    for line in installs:
        words = line.split()
        target = re.fullmatch(r"['\"]?\.(?:\[([\w,-]+)\])?['\"]?", words[-1])
        assert target, f"installs something else than the source tree: {line}"
        extras = set((target.group(1) or "").split(",")) - {""}
        assert not extras & {"test", "dev", "demo"}, f"installs development extras: {line}"
        assert "-e" not in words and "--editable" not in words


def test_dockerfile_runs_as_non_root_with_a_healthcheck() -> None:
    final = dockerfile_stages()[-1]
    keywords = [k for k, _ in final]
    users = [a for k, a in final if k == "USER"]
    assert users, "no USER: the containers would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert keywords.index("USER") < keywords.index("CMD")
    assert "HEALTHCHECK" in keywords
    assert dockerfile_commands()["Dockerfile CMD"][:3] == ["celery", "-A", "workers.app"]


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or one of its parent
    folders decides; ``*`` stays inside one path segment, ``**`` crosses them."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern.lstrip("!").strip("/")
        regex = "".join(
            "(.*/)?" if tok == "**/" else ".*" if tok == "**" else "[^/]*" if tok == "*"
            else "[^/]" if tok == "?" else tok if tok.startswith("[") else re.escape(tok)
            for tok in re.findall(r"\*\*/|\*\*|\*|\?|\[[^\]]*\]|[^*?\[]+", body)
        )  # fmt: skip
        if any(re.fullmatch(regex, p) for p in prefixes):
            result = not negate
    return result


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [s.strip() for s in lines if s.strip() and not s.strip().startswith("#")]


def copied_sources() -> Iterator[str]:
    for stage in dockerfile_stages():
        for keyword, args in stage:
            if keyword in ("COPY", "ADD") and "--from=" not in args:
                yield from [a for a in args.split()[:-1] if not a.startswith("--")]


def test_build_context_holds_what_the_image_copies() -> None:
    patterns = dockerignore_patterns()
    sources = list(copied_sources())
    assert {"setup.cfg", "workers", "celeryconfig.py"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not ignored(source, patterns), f"COPY {source}: excluded by the .dockerignore"
    for path in ("workers/app.py", "workers/py.typed", "workers/config/env.py"):
        assert not ignored(path, patterns), path
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/unit/test_docker.py",
        "docker/.env",
        "celery_kafka_workers.egg-info/PKG-INFO",
        "workers/__pycache__/app.cpython-311.pyc",
    ):
        assert ignored(path, patterns), path
