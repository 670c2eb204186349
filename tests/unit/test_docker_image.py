"""The Docker image: every command its containers run is a real entry point of the installed
package, with options that entry point lists in ``--help``; and the Dockerfile is a slim
multi-stage build of runtime dependencies only, non-root, with a health check and a build
context (``Dockerfile.dockerignore``) that holds what the image copies."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.unit.docker_stack import (
    COMBOS,
    DOCKER,
    DOCKERFILE,
    OTHER_READ,
    PACKAGE_SERVICES,
    ROOT,
    services,
)

DOCKERIGNORE = DOCKER / "Dockerfile.dockerignore"
BIN = Path(sys.executable).parent  # the venv's console scripts: celery, workers


def clean_env() -> dict[str, str]:
    """The environment for subprocesses without any variable the configuration reads, so the
    shell of whoever runs the tests cannot change what is checked."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WORKERS_", "CELERY_")) and k not in OTHER_READ
    }


# -- every command is a real entry point, with options it lists --------------------------------

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


# -- the Dockerfile -------------------------------------------------------------------------------


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
        "tests/unit/test_docker_image.py",
        "docker/.env",
        "celery_kafka_workers.egg-info/PKG-INFO",
        "workers/__pycache__/app.cpython-311.pyc",
    ):
        assert ignored(path, patterns), path
