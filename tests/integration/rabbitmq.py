"""A real ``rabbitmq-server`` for the integration tests: one node per session on free loopback
ports, with its own node name, Erlang cookie, port mapper (epmd), data and log folders, so that
it never meets a system broker or another test run. ``WORKERS_TEST_RABBITMQ=amqp://...`` points
the tests at a broker that already runs instead."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import amqp
import pytest

from tests.integration.services import unavailable
from workers.testing import ServiceUnavailable, free_port

# Debian's package keeps the real scripts here; its /usr/sbin wrappers switch to the system
# user ``rabbitmq``, who cannot use our folders. Elsewhere the scripts are on PATH.
_DEBIAN_SCRIPTS = Path("/usr/lib/rabbitmq/bin")
START_SECONDS = 90.0  # a cold start takes ~5 s alone; allow for a loaded 2-core machine
STOP_SECONDS = 15.0  # a clean stop takes 1-3 s


def script(name: str) -> str:
    """The path of a RabbitMQ script (``rabbitmq-server``, ``rabbitmqctl``)."""
    packaged = _DEBIAN_SCRIPTS / name
    found = str(packaged) if os.access(packaged, os.X_OK) else shutil.which(name)
    if found is None:
        raise ServiceUnavailable(
            f"{name} not found; install it (Debian/Ubuntu: apt-get install rabbitmq-server)"
        )
    return found


class RabbitServer:
    """One RabbitMQ node. ``start()`` returns once it accepts AMQP connections; ``stop()``
    kills the node (its Erlang VM and their children), the port mapper started for it, and
    removes its folder. Messages live only as long as the node."""

    def __init__(self) -> None:
        self.port, self.dist_port, self.epmd_port = free_port(), free_port(), free_port()
        self.node = f"workers-test-{uuid.uuid4().hex[:8]}@localhost"
        self.home = Path(tempfile.mkdtemp(prefix="workers-rabbitmq-"))
        self.server: subprocess.Popen[bytes] | None = None
        self.epmd: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def env(self) -> dict[str, str]:
        """The environment of the node and of its command line tools."""
        home = self.home
        return {
            **os.environ,
            "HOME": str(home),  # the Erlang cookie is made and read here
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
            "RABBITMQ_LOG_BASE": str(home / "log"),
            "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(home / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(home / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            # The start script then becomes the Erlang VM (exec) instead of waiting on it as
            # its parent: the VM is our child, killed and reaped by ``stop``.
            "RUNNING_UNDER_SYSTEMD": "true",
        }

    def start(self) -> RabbitServer:
        try:
            self._spawn(script("rabbitmq-server"))
            self._wait_ready(START_SECONDS)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, server: str) -> None:
        epmd = shutil.which("epmd")
        if epmd is None:
            raise ServiceUnavailable("epmd (Erlang's port mapper) not found next to RabbitMQ")
        for folder in ("mnesia", "log"):
            (self.home / folder).mkdir()
        (self.home / "rabbitmq-env.conf").write_text("")  # not the system's
        (self.home / "enabled_plugins").write_text("[].\n")  # no management plugin: faster
        # Alarms that block publishers would stall the tests on a busy shared machine.
        (self.home / "rabbitmq.conf").write_text(
            "disk_free_limit.absolute = 1MB\nvm_memory_high_watermark.relative = 0.9\n"
        )
        with open(self.home / "server.log", "ab") as log:  # the children keep their copies
            # Our own port mapper, in the foreground: the node finds it on ERL_EPMD_PORT
            # instead of starting a daemon that would outlive the tests.
            self.epmd = subprocess.Popen(
                [epmd, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env(), start_new_session=True,
            )  # fmt: skip
            self.server = subprocess.Popen(
                [server], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env(), cwd=self.home, start_new_session=True,
            )  # fmt: skip

    def _wait_ready(self, timeout: float) -> None:
        """Until an AMQP handshake succeeds (the listener opens once the node has booted)."""
        assert self.server is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.server.poll() is not None:
                raise ServiceUnavailable(
                    f"rabbitmq-server exited with code {self.server.returncode}: "
                    f"{self.output()[-2000:]}"
                )
            try:
                connection = amqp.Connection(f"127.0.0.1:{self.port}", connect_timeout=2)
                connection.connect()
                connection.close()
                return
            except (OSError, amqp.exceptions.AMQPError):
                if time.monotonic() > deadline:
                    raise ServiceUnavailable(
                        f"rabbitmq-server did not accept AMQP connections on 127.0.0.1:"
                        f"{self.port} within {timeout:g} s: {self.output()[-2000:]}"
                    ) from None
                time.sleep(0.2)

    def output(self) -> str:
        path = self.home / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        """``rabbitmqctl`` on this node; its output. Raises on failure."""
        done = subprocess.run(
            [script("rabbitmqctl"), "-n", self.node, *args],
            env=self.env(), capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise AssertionError(f"rabbitmqctl {' '.join(args)}: {done.stderr or done.stdout}")
        return done.stdout

    def stop(self) -> None:
        """Stop the node: SIGTERM (the Erlang VM shuts down and reaps its port programs), after
        ``STOP_SECONDS`` SIGKILL to its process group; then the port mapper; then remove the
        folder. Idempotent."""
        for proc, grace in ((self.server, STOP_SECONDS), (self.epmd, 0.0)):
            if proc is None:
                continue
            if grace:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(grace)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        self.server = self.epmd = None
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    """An AMQP URL: ``WORKERS_TEST_RABBITMQ``, or a node started once for the session (only
    when a test asks for it)."""
    external = os.environ.get("WORKERS_TEST_RABBITMQ")
    if external:
        yield external
        return
    try:
        server = RabbitServer().start()
    except ServiceUnavailable as exc:
        unavailable(str(exc))
        return
    try:
        yield server.url
    finally:
        server.stop()
