"""Highly available Redis for integration tests, as real ``redis-server`` processes on free
loopback ports, each in a temporary directory of its own, stopped (and the directories
removed) at the end:

- ``SentinelSet``: one master, one replica and three Sentinels (``redis-server --sentinel``)
  watching it as service ``SERVICE``; the data nodes and the Sentinels have passwords of
  their own, so both kinds of credentials are exercised; ``failover()`` runs
  ``SENTINEL FAILOVER`` and waits until every Sentinel names the new master;
- ``ClusterSet``: a Redis Cluster of three masters (``--cluster-enabled yes``, joined by
  ``redis-cli --cluster create``), ready once every node says ``cluster_state:ok``.

The session fixtures ``redis_cluster`` and ``redis_sentinels`` (registered in ``conftest.py``)
start them when a test first asks.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.integration.services import unavailable
from workers.testing import ServiceUnavailable, free_port, wait_for_port

SERVICE = "workers-ha"
DATA_PASSWORD = "data-pw-7d1"  # the master's and replica's (and the cluster nodes')
SENTINEL_PASSWORD = "sentinel-pw-3c9"


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise ServiceUnavailable("redis-server not found (Debian: apt-get install redis-server)")
    return found


def wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` (Redis errors count as not yet) until it holds, or raise."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError, OSError):
            if condition():
                return
        if time.monotonic() > deadline:
            raise ServiceUnavailable(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


class Node:
    """One ``redis-server`` process (a data node or a Sentinel) in ``directory``."""

    def __init__(self, directory: Path, name: str, argv: list[str], password: str) -> None:
        self.directory = directory / name
        self.directory.mkdir()
        self.name = name
        self.port = free_port()
        self.password = password
        self.argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.log = self.directory / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Node:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, cwd=self.directory, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        try:
            wait_for_port(self.port, self.proc, 20.0, self.name)
        except ServiceUnavailable as exc:
            raise ServiceUnavailable(f"{exc}; log: {self.log.read_text()[-2000:]}") from None
        return self

    def client(self, **options: object) -> redis.Redis:
        return redis.Redis(
            "127.0.0.1", self.port, password=self.password, socket_timeout=5, **options
        )  # type: ignore[arg-type]

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _data_argv(binary: str) -> list[str]:
    return [binary, "--port", "{port}", "--bind", "127.0.0.1", "--save", "", "--appendonly",
            "no", "--requirepass", DATA_PASSWORD, "--masterauth", DATA_PASSWORD]  # fmt: skip


class SentinelSet:
    """A master, its replica and three Sentinels. The master refuses writes while no replica
    follows it (``min-replicas-to-write 1``), as the README advises for Sentinel deployments:
    a demoted master that clients still reach cannot take writes that the failover loses."""

    def __init__(self) -> None:
        binary = redis_binary()
        self._tmp = Path(tempfile.mkdtemp(prefix="redis-sentinel-"))
        data = [*_data_argv(binary), "--min-replicas-to-write", "1",
                "--min-replicas-max-lag", "5"]  # fmt: skip
        self.master = Node(self._tmp, "master", data, DATA_PASSWORD)
        self.replica = Node(self._tmp, "replica", data, DATA_PASSWORD)
        self.replica.argv += ["--replicaof", "127.0.0.1", str(self.master.port)]
        self.sentinels: list[Node] = []
        for i in range(3):
            node = Node(self._tmp, f"sentinel-{i}", [], SENTINEL_PASSWORD)
            conf = node.directory / "sentinel.conf"
            conf.write_text(
                f"port {node.port}\nbind 127.0.0.1\ndir {node.directory}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel auth-pass {SERVICE} {DATA_PASSWORD}\n"
                f"sentinel down-after-milliseconds {SERVICE} 5000\n"
                f"sentinel failover-timeout {SERVICE} 20000\n"
                f"requirepass {SENTINEL_PASSWORD}\nsentinel sentinel-pass {SENTINEL_PASSWORD}\n"
            )
            node.argv = [binary, str(conf), "--sentinel"]
            self.sentinels.append(node)

    @property
    def url(self) -> str:
        """``workers_redis_url`` of the set (its Sentinels' password is ``SENTINEL_PASSWORD``)."""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://:{DATA_PASSWORD}@{hosts}/{SERVICE}/0"

    def start(self) -> SentinelSet:
        try:
            self.master.start()
            self.replica.start()
            wait(lambda: self._link_up(self.replica), 30, "the replica to sync")
            for sentinel in self.sentinels:
                sentinel.start()
            wait(self._sentinels_agree, 60, "the Sentinels to find each other and the replica")
        except BaseException:
            self.stop()
            raise
        return self

    def master_address(self, sentinel: Node) -> tuple[str, int]:
        host, port = sentinel.client().sentinel_get_master_addr_by_name(SERVICE)
        return host.decode() if isinstance(host, bytes) else str(host), int(port)

    def current_master(self) -> Node:
        port = self.master_address(self.sentinels[0])[1]
        return self.master if port == self.master.port else self.replica

    def failover(self, timeout: float = 60.0) -> tuple[Node, Node]:
        """``SENTINEL FAILOVER``; returns (old master, new master) once every Sentinel names
        the new one and it takes writes (the old one follows it as a replica)."""
        old = self.current_master()
        new = self.replica if old is self.master else self.master
        self.sentinels[0].client().execute_command("SENTINEL", "FAILOVER", SERVICE)
        wait(
            lambda: all(self.master_address(s)[1] == new.port for s in self.sentinels),
            timeout, "every Sentinel to name the new master",
        )  # fmt: skip
        wait(lambda: self._link_up(old), timeout, "the old master to follow the new one")
        return old, new

    def _link_up(self, replica: Node) -> bool:
        info = replica.client().info("replication")
        return info.get("role") == "slave" and info.get("master_link_status") == "up"

    def _sentinels_agree(self) -> bool:
        for sentinel in self.sentinels:
            state = sentinel.client().sentinel_master(SERVICE)
            if state["num-other-sentinels"] < 2 or state["num-slaves"] < 1:
                return False
        return True

    def logs(self) -> str:
        nodes = [self.master, self.replica, *self.sentinels]
        return "\n".join(f"--- {n.name}\n{n.log.read_text()[-3000:]}" for n in nodes)

    def stop(self) -> None:
        for node in [*self.sentinels, self.replica, self.master]:
            node.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)


class ClusterSet:
    """A Redis Cluster of three masters (no replicas), every slot covered."""

    def __init__(self, masters: int = 3) -> None:
        binary = redis_binary()
        self._cli = shutil.which("redis-cli")
        if self._cli is None:
            raise ServiceUnavailable("redis-cli not found (Debian: apt-get install redis-tools)")
        self._tmp = Path(tempfile.mkdtemp(prefix="redis-cluster-"))
        self.nodes: list[Node] = []
        for i in range(masters):
            # The cluster bus port is chosen too: the default (port + 10000) may be taken.
            argv = [*_data_argv(binary), "--cluster-enabled", "yes", "--cluster-config-file",
                    "nodes.conf", "--cluster-node-timeout", "5000", "--cluster-port",
                    str(free_port())]  # fmt: skip
            self.nodes.append(Node(self._tmp, f"node-{i}", argv, DATA_PASSWORD))

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        return f"redis+cluster://:{DATA_PASSWORD}@{hosts}"

    def start(self) -> ClusterSet:
        assert self._cli is not None
        try:
            for node in self.nodes:
                node.start()
            argv = [self._cli, "-a", DATA_PASSWORD, "--no-auth-warning", "--cluster", "create",
                    *(f"127.0.0.1:{n.port}" for n in self.nodes), "--cluster-replicas", "0",
                    "--cluster-yes"]  # fmt: skip
            done = subprocess.run(argv, capture_output=True, timeout=60, check=False)
            if done.returncode != 0:
                output = (done.stdout + done.stderr).decode(errors="replace")[-2000:]
                raise ServiceUnavailable(f"redis-cli --cluster create failed: {output}")
            wait(self._ready, 60, "cluster_state:ok on every node")
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        for node in self.nodes:
            info = node.client().cluster("info")
            if info.get("cluster_state") != "ok" or int(info["cluster_slots_ok"]) != 16384:
                return False
            if int(info["cluster_known_nodes"]) != len(self.nodes):
                return False
        return True

    def logs(self) -> str:
        return "\n".join(f"--- {n.name}\n{n.log.read_text()[-3000:]}" for n in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[ClusterSet]:
    """A Redis Cluster for the session (skipped locally, failed in CI, without redis-server)."""
    yield from _started(ClusterSet)


@pytest.fixture(scope="session")
def redis_sentinels() -> Iterator[SentinelSet]:
    """A master, its replica and three Sentinels for the session; a test may fail it over."""
    yield from _started(SentinelSet)


def _started(kind: type[ClusterSet] | type[SentinelSet]) -> Iterator[Any]:
    try:
        service = kind().start()
    except ServiceUnavailable as exc:
        unavailable(str(exc))
        return
    try:
        yield service
    finally:
        service.stop()
