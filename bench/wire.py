"""What a stretch of this process asks of its services: Redis round trips (each write of a
command or a pipeline by redis-py, kombu's included) and Kafka requests by API (kafka-python),
counted on the client side; and the commands the Redis server ran (``INFO commandstats``,
those Lua scripts ran included), read before and after.

The client-side counts wrap two library methods for the life of the process (installed on first
use, counting only inside ``counting``): redis-py's ``send_packed_command`` and kafka-python
3.0's ``KafkaConnection._send_request`` (private, hence the check of the version).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis

_ACTIVE: list[Tally] = []
_LOCK = threading.Lock()  # kafka-python sends from its I/O thread too
_INSTALLED = False


@dataclass
class Tally:
    """What one stretch asked for. ``commands``: calls per Redis command as the server counted
    them (each command a script ran, and the script's ``evalsha``), ``INFO`` left out;
    ``redis_cpu``: the server's CPU seconds (user + system, all its threads)."""

    round_trips: int = 0
    requests: Counter[str] = field(default_factory=Counter)
    commands: dict[str, int] = field(default_factory=dict)
    redis_cpu: float = 0.0

    @property
    def redis_commands(self) -> int:
        return sum(self.commands.values())

    @property
    def scripts(self) -> int:
        return sum(n for name, n in self.commands.items() if name in ("evalsha", "eval"))

    @property
    def kafka_requests(self) -> int:
        return sum(self.requests.values())


def _install() -> None:
    global _INSTALLED
    if _INSTALLED:
        return
    from redis.connection import AbstractConnection

    try:
        from kafka.net.connection import KafkaConnection
    except ImportError as exc:  # kafka-python < 3.0: no kafka.net
        raise RuntimeError(f"counting Kafka requests needs kafka-python 3.0: {exc}") from exc
    send: Any = AbstractConnection.send_packed_command
    request: Any = KafkaConnection._send_request

    def send_packed_command(self: Any, command: Any, check_health: bool = True) -> Any:
        if _ACTIVE:
            with _LOCK:
                for tally in _ACTIVE:
                    tally.round_trips += 1
        return send(self, command, check_health)

    def send_request(self: Any, req: Any, *args: Any, **kwargs: Any) -> Any:
        if _ACTIVE:
            name = type(req).__name__
            with _LOCK:
                for tally in _ACTIVE:
                    tally.requests[name] += 1
        return request(self, req, *args, **kwargs)

    AbstractConnection.send_packed_command = send_packed_command  # type: ignore[method-assign]
    KafkaConnection._send_request = send_request
    _INSTALLED = True


def commandstats(server: redis.Redis) -> dict[str, int]:
    """Calls per command since the server started (``INFO commandstats``)."""
    found = server.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in found.items()}


def server_cpu(server: redis.Redis) -> float:
    """CPU seconds the server has used (``INFO cpu``: user + system)."""
    found = server.info("cpu")
    return float(found["used_cpu_user"]) + float(found["used_cpu_sys"])


@contextmanager
def counting(server: redis.Redis) -> Iterator[Tally]:
    """Count what this process sends inside the block; ``server`` (a client of its own) reads
    the server's counts around it. The server's counts hold anything else its clients did
    meanwhile: use a server nothing else is busy with. Its CPU time includes answering one
    ``INFO cpu`` (about 10 µs)."""
    _install()
    before = commandstats(server)
    cpu = server_cpu(server)
    tally = Tally()
    with _LOCK:
        _ACTIVE.append(tally)
    try:
        yield tally
    finally:
        with _LOCK:
            _ACTIVE.remove(tally)
        tally.redis_cpu = server_cpu(server) - cpu
        after = commandstats(server)
        tally.commands = {
            name: calls - before.get(name, 0)
            for name, calls in sorted(after.items())
            if name != "info" and calls != before.get(name, 0)
        }
