"""A throw-away PostgreSQL server (Debian's ``postgresql`` binaries) in a temp directory, on a
free loopback port: the durable storage for a Tansu broker built with its postgres feature."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from workers.testing import ServiceUnavailable, free_port, wait_for_port

USER = "tansu"  # the database superuser initdb creates; trust authentication on loopback


def bin_dir() -> Path:
    """Where ``initdb`` and ``postgres`` are: ``WORKERS_CHAOS_PG_BIN``, else what
    ``pg_config --bindir`` says (Debian keeps them off the PATH, in a versioned directory),
    else next to an ``initdb`` on the PATH."""
    configured = os.environ.get("WORKERS_CHAOS_PG_BIN")
    if configured:
        return Path(configured)
    if shutil.which("pg_config"):
        done = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidate = Path(done.stdout.strip())
        if done.returncode == 0 and (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    raise ServiceUnavailable("PostgreSQL not found (apt-get install postgresql)")


class PostgresServer:
    """``initdb`` + ``postgres`` in ``directory``. PostgreSQL refuses to run as root, so as
    root both run as the ``postgres`` system user (created by the Debian package), and
    ``directory`` must be reachable by that user."""

    def __init__(self, directory: Path) -> None:
        self.bin = bin_dir()
        self.directory = directory
        self.data = directory / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.user = "postgres" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        """The storage URL Tansu takes."""
        return f"postgres://{USER}:{USER}@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        done = subprocess.run(
            [str(self.bin / argv[0]), *argv[1:]], user=self.user, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise ServiceUnavailable(f"{argv[0]} failed: {done.stderr.strip()[-500:]}")

    def start(self) -> PostgresServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            shutil.chown(self.directory, self.user, self.user)
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8")
        argv = [
            str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
            "-k", str(self.directory), "-c", "listen_addresses=127.0.0.1",
        ]  # fmt: skip
        with open(self.directory / "postgres.log", "ab") as log:
            self.proc = subprocess.Popen(
                argv, user=self.user, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        wait_for_port(self.port, self.proc, 60.0, "postgres")
        return self

    def stop(self) -> None:
        """A fast shutdown (SIGINT), then SIGKILL if it hangs; idempotent."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
