"""A ``redis-server`` with an append-only file that can be crashed, stopped, paused and started
again on the same port with its data: the Redis of a chaos run (state, offsets, Celery broker)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from workers.embedded import ServiceUnavailable, free_port, wait_for_port


class AofRedis:
    """``redis-server --appendonly yes --appendfsync everysec`` in ``directory``.

    ``kill`` (SIGKILL) may lose the last second of writes, as a crash does; ``terminate``
    (SIGTERM) flushes the AOF first. ``start`` after either reloads the data on the same port.
    """

    def __init__(self, directory: Path, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceUnavailable("redis-server not found (apt-get install redis-server)")
        self.binary = binary
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> AofRedis:
        argv = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.directory), "--save", "", "--appendonly", "yes",
            "--appendfsync", "everysec", "--protected-mode", "yes",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self.paused = False
        wait_for_port(self.port, self.proc, 30.0, "redis-server")
        self._wait_loaded()
        return self

    def _wait_loaded(self, timeout: float = 30.0) -> None:
        """Wait until the AOF is loaded (``PING`` answers ``LOADING`` until then)."""
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
        """SIGKILL: a crash; up to a second of acknowledged writes may be lost."""
        self._signal_and_wait(signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM: Redis fsyncs the AOF and exits."""
        self.resume()
        self._signal_and_wait(signal.SIGTERM, timeout=30.0)

    def pause(self) -> None:
        """SIGSTOP: the server keeps its connections but answers nothing until ``resume``."""
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.proc is not None and self.paused:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.paused = False

    def stop(self) -> None:
        """Stop for good (idempotent)."""
        self._signal_and_wait(signal.SIGKILL)

    def _signal_and_wait(self, sig: int, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        self.paused = False
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
