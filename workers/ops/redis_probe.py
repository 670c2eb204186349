"""What ``workers check`` says of the package's Redis once it answered: its version and, for a
Sentinel's master or a Redis Cluster, where the data is and whether all of it can be served."""

from __future__ import annotations

from typing import Any

from redis.cluster import RedisCluster

from workers.config.masking import clip
from workers.connections.redis_clients import SentinelMaster

SLOTS = 16384


def describe(client: Any, wait_replicas: int = 0) -> tuple[str, str]:
    """(level, detail) of ``client``'s Redis. Raises redis-py's errors when a node (or every
    Sentinel) does not answer. A cluster with slots that no master serves fails; a master
    with fewer replicas than the alert state waits for is a warning (its writes fail)."""
    if isinstance(client, RedisCluster):
        return _cluster(client)
    info = client.info("server")
    version = f"Redis {clip(str(info.get('redis_version', '?')), 40)}"
    if not isinstance(client, SentinelMaster):
        return "ok", version
    pool: Any = client.connection_pool
    host, port = pool.get_master_address()
    replicas = int(client.info("replication").get("connected_slaves", 0))
    detail = (
        f"{version}, master {host}:{port} of Sentinel service {pool.service_name!r} "
        f"({len(pool.sentinel_manager.sentinels)} Sentinels), {replicas} replica(s)"
    )
    if replicas < wait_replicas:
        return "warn", (
            f"{detail}: fewer than the {wait_replicas} that alert state waits for "
            "(workers_redis_wait_replicas); its writes fail until one follows"
        )
    return "ok", detail


def _cluster(client: RedisCluster) -> tuple[str, str]:
    nodes: Any = client.info("server", target_nodes=RedisCluster.PRIMARIES)
    versions = sorted({str(info.get("redis_version", "?")) for info in nodes.values()})
    state: Any = client.cluster_info()
    served = int(state.get("cluster_slots_ok", 0))
    detail = (
        f"Redis {clip(', '.join(versions), 40)}, cluster of {len(nodes)} masters: "
        f"state {clip(str(state.get('cluster_state')), 20)}, {served} of {SLOTS} slots served"
    )
    if state.get("cluster_state") != "ok" or served != SLOTS:
        return "fail", detail
    return "ok", detail
