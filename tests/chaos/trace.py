"""Evidence for losses: the Celery broker's traffic seen through Redis ``MONITOR``. Every task
message a pipeline stage was sent (``LPUSH``) is remembered; a message that no worker ever logged
as received *vanished* between the broker and the worker (celery/kombu#305: taken off the list,
killed before it was recorded as unacknowledged)."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

# Envelopes are JSON as kombu writes it (": ") or as orjson does (":", workers.runtime.kombu_json).
_ID = re.compile(r'\\*"id\\*": ?\\*"([0-9a-f-]{36})')
_TASK = re.compile(r'\\*"task\\*": ?\\*"([\w.]+)')
_ARGS = re.compile(r"<(\d+) messages: (\S+) \.\. (\S+)>")
_RECEIVED = re.compile(r"Task \S+\[([0-9a-f-]{36})\] received")


@dataclass(frozen=True, slots=True)
class Push:
    wall: float  # Redis server time
    task: str
    batch: str  # "<n messages: first .. last>" for a first stage's message, else ""
    items: tuple[str, ...] = ()  # the record ids (change ids for publish) the message carried


def items_of(command: str) -> tuple[str, ...]:
    """The ids of the items a stage message carries: its first argument, a list of messages
    (``id``), events (``record_id``) or changes (``change_id``); () if it cannot be read."""
    try:
        message = json.loads(command.split(" ", 2)[2])
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        batch = json.loads(body)[0][0]
        return tuple(str(i.get("change_id") or i.get("record_id") or i.get("id")) for i in batch)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return ()


class BrokerTrace(threading.Thread):
    """Watches ``LPUSH`` commands on the broker's database for the ``tasks`` given; reconnects
    after Redis restarts (a push made while it reconnects is not seen: no false findings)."""

    def __init__(self, url: str, db: int, tasks: Sequence[str]) -> None:
        super().__init__(name="chaos-trace", daemon=True)
        self.url, self.db, self.tasks = url, db, set(tasks)
        self.pushes: dict[str, Push] = {}
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                client = redis.Redis.from_url(self.url, socket_timeout=1)
                with client.monitor() as monitor:
                    while not self._halt.is_set():
                        self._see(monitor.next_command())
            except (redis.RedisError, OSError, ValueError):
                time.sleep(0.05)

    def _see(self, event: dict[str, object]) -> None:
        command = str(event.get("command", ""))
        if event.get("db") != self.db or not command.startswith("LPUSH "):
            return
        task, ident = _TASK.search(command), _ID.search(command)
        if task is None or ident is None or task.group(1) not in self.tasks:
            return
        batch = _ARGS.search(command)
        wall = float(str(event.get("time", 0.0)))
        if ident.group(1) not in self.pushes:
            self.pushes[ident.group(1)] = Push(
                wall, task.group(1), batch.group(0) if batch else "", items_of(command)
            )


def received(logs: Iterable[Path]) -> set[str]:
    """Task ids any worker logged as received (after kombu recorded them unacknowledged)."""
    found: set[str] = set()
    for path in logs:
        if path.exists():
            found.update(_RECEIVED.findall(path.read_text(errors="replace")))
    return found


def vanished(trace: BrokerTrace, logs: Iterable[Path]) -> dict[str, Push]:
    """Messages sent to a stage and never received by any worker."""
    got = received(logs)
    return {ident: push for ident, push in trace.pushes.items() if ident not in got}
