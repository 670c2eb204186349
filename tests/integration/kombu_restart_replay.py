"""Replays, without a worker, what a Celery 5.7 worker's consumer does when its Redis broker
dies: ``Connection.collect()`` and then ``close()``, with an unacked delivery, a BRPOP in
flight and a broadcast channel (as gossip and pidbox have). Run as a script in a process of its
own (it patches kombu with ``--fix``); exit code 1 means kombu raised the AttributeError that
made workers exit, 0 that it did not, 2 that the state could not be set up.
"""

from __future__ import annotations

import contextlib
import os
import sys

from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.common import ignore_errors

from workers.testing import RedisServer


def replay() -> int:
    server = RedisServer().start()
    try:
        conn = Connection(server.url)
        conn.connect()
        work = Queue("replay-work")
        Producer(conn.default_channel).publish(
            {"n": 1}, routing_key=work.name, declare=[work], serializer="json"
        )
        received: list[object] = []
        Consumer(
            conn.default_channel, queues=[work], accept=["json"],
            callbacks=[lambda body, message: received.append(message)],
        ).consume()  # fmt: skip
        broadcast = Queue("replay-bcast", Exchange("replay-bcast", type="fanout"), auto_delete=True)
        Consumer(conn.channel(), queues=[broadcast], accept=["json"], callbacks=[]).consume()
        conn.drain_events(timeout=2)  # delivered; stays unacked (task_acks_late)
        for _ in range(10):  # leave a BRPOP in flight, as an idle consumer does
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=0.3)
            if conn.default_channel._in_poll:
                break
        if not received or not conn.default_channel._in_poll:
            return 2
        server.stop(sig=9)
        with contextlib.suppress(Exception):  # what the worker does: it ignores this too
            conn.collect(socket_timeout=5)
        try:
            ignore_errors(conn, conn.close)
        except AttributeError as exc:
            print(f"AttributeError: {exc}")
            return 1
        return 0
    finally:
        server.stop(sig=9)


if __name__ == "__main__":
    if "--fix" in sys.argv:
        from workers.runtime.kombu_redis import install

        install()
    code = replay()
    sys.stdout.flush()
    os._exit(code)  # skip kombu's at-exit restore of the message left unacked on purpose
