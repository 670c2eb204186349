"""Running the package's Lua scripts on one server, a Sentinel's master or a Redis Cluster.

A script call outside a pipeline is redis-py's ``Script``: ``EVALSHA``, loading the script
where a server answers ``NOSCRIPT`` (a new master after a failover, a restarted node). A plain
pipeline loads its scripts before it runs; a cluster pipeline cannot, so there the script is
sent whole (``EVAL``; Redis caches it by its digest): a node that lost its script cache never
fails a call of a pipeline whose other calls already ran.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.cluster import ClusterPipeline
from redis.commands.core import Script
from redis.crc import key_slot


def run(script: Script, keys: Sequence[Any], args: Sequence[Any], client: Any) -> Any:
    """Call ``script`` on ``client`` (a client or a pipeline, which then queues the call)."""
    if isinstance(client, ClusterPipeline):
        return evaluate(client, script.script, keys, args)
    return script(keys=keys, args=args, client=client)


def evaluate(client: Any, text: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
    """``EVAL`` of a short script's ``text`` on ``client`` (a client or a pipeline): on a
    cluster it runs on the node of its keys' slot."""
    if isinstance(client, ClusterPipeline):  # whose eval() is not implemented in redis-py
        pipe: Any = client
        return pipe.execute_command("EVAL", text, len(keys), *keys, *args)
    return client.eval(text, len(keys), *keys, *args)


def slot(key: str) -> int:
    """The Redis Cluster hash slot of ``key`` (of its ``{tag}``, if it has one)."""
    return int(key_slot(key.encode()))
