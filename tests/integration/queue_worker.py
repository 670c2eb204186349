"""One process of ``test_queue``'s restart tests: takes from a topic with ``KafkaQueue`` and logs
every take as one JSON line of ``[partition, offset, value]`` rows.

Run as ``python -m tests.integration.queue_worker`` from the repository root. After its takes it
either closes the queue and exits (``--then close``), or prints ``taken`` and waits to be
killed without closing (``--then hang``); it exits by itself when its parent is gone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

from workers.config import load_settings
from workers.connections import Connections
from workers.kafka.queue import KafkaQueue


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--conf", required=True, help="the workers_* settings as JSON")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--takes", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--lease-ttl", type=float, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--then", choices=("close", "hang"), required=True)
    args = parser.parse_args(argv)

    connections = Connections(load_settings(json.loads(args.conf), environ={}))
    queue = KafkaQueue(args.topic, connections=connections, lease_ttl=args.lease_ttl)
    with open(args.log, "a", encoding="utf-8") as log:
        for _ in range(args.takes):
            records = queue.take_raw(count=args.count, timeout=args.timeout)
            rows = [[r.partition, r.offset, r.value.decode()] for r in records]
            log.write(json.dumps(rows) + "\n")
            log.flush()  # line by line: a SIGKILLed process leaves its log behind
    if args.then == "close":
        queue.close()
        connections.close()
        print("closed", flush=True)
        return 0
    print("taken", flush=True)
    parent = os.getppid()
    deadline = time.monotonic() + 60
    while os.getppid() == parent and time.monotonic() < deadline:
        time.sleep(0.1)
    return 1


if __name__ == "__main__":
    sys.exit(main())
