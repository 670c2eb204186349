"""One competitor for ``test_lease_competition``: acquires leases in a loop and logs, one JSON
line per acquire, the interval during which it believes it owns each partition.

Run as ``python -m tests.integration.lease_worker`` from the repository root. It prints ``ready``
once connected, waits for ``go`` on stdin, then loops until killed, until ``--max-seconds`` have
passed, or until its parent is gone (so a crashed test leaves no process behind).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

import redis

from workers.exceptions import RecoverableError
from workers.state.keys import Space
from workers.state.leases import Grant, Owner, RedisLeases


def wall(deadline: float) -> float:
    """A ``time.monotonic()`` deadline as ``time.time()``. The monotonic clock is read first, so
    a preemption between the two reads can only make the result later (a stricter test)."""
    remaining = deadline - time.monotonic()
    return time.time() + remaining


def entry(sent: float, got: float, grant: Grant) -> dict[str, Any]:
    """The log line of one acquire: sent before the request, got when the reply arrived, and
    per held partition [partition, epoch, end of belief in wall time]."""
    held = [[x.partition, x.epoch, wall(x.deadline)] for x in grant.leases]
    return {"sent": sent, "got": got, "held": held, "share": grant.share, "members": grant.members}


def compete(
    leases: RedisLeases, space: Space, parts: list[int], interval: float, until: float, log: TextIO
) -> None:
    parent = os.getppid()
    tick = time.monotonic()
    while time.monotonic() < until and os.getppid() == parent:
        sent = time.time()
        try:
            grant = leases.acquire(space, parts)
        except RecoverableError as exc:  # beliefs stand until their deadlines; try again
            log.write(json.dumps({"sent": sent, "error": str(exc)}) + "\n")
        else:
            log.write(json.dumps(entry(sent, time.time(), grant)) + "\n")
        log.flush()  # line by line, so a SIGKILLed process leaves its log behind
        tick += interval
        time.sleep(max(0.0, tick - time.monotonic()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--ttl", type=float, required=True)
    parser.add_argument("--interval", type=float, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--max-seconds", type=float, required=True)
    args = parser.parse_args(argv)

    client = redis.Redis.from_url(args.redis_url)
    client.ping()
    space = Space(prefix=args.prefix, cluster="common", group="g", topic=args.topic)
    leases = RedisLeases(client, Owner.current(task=args.name), ttl=args.ttl)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    with open(args.log, "a", encoding="utf-8") as log:
        until = time.monotonic() + args.max_seconds
        compete(leases, space, list(range(args.partitions)), args.interval, until, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
