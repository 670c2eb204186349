"""The Redis client of a URL (``workers.config.redis_urls``): one server, the master that a set
of Sentinels names, or a Redis Cluster. Every form takes the same options (timeouts, retry).

Through Sentinel, a connection to a master that was demoted (``READONLY``) or that refuses
writes because its replicas are gone (``NOREPLICAS``, with ``min-replicas-to-write``) is
dropped and raised as a ``ConnectionError``: redis-py's retry then asks the Sentinels for the
master again, and a caller that still fails sees a connection error (``RecoverableError``).
"""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection

from workers.config.redis_urls import parse_redis_url

# Options that concern the connection to a server, also used for the Sentinels.
_SOCKET = ("socket_timeout", "socket_connect_timeout")


class _MasterConnection(SentinelManagedConnection):
    """A connection to the Sentinels' master that gives up on a master that cannot write."""

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except redis.ResponseError as exc:
            if not str(exc).startswith("NOREPLICAS") or not self.connection_pool.is_master:
                raise
            self.disconnect()  # type: ignore[no-untyped-call]  # then it asks the Sentinels
            raise redis.ConnectionError(f"the master refuses writes: {exc}") from exc


class SentinelMaster(redis.Redis):
    """The client of a Sentinel-managed master; closing it closes the Sentinels' clients too."""

    def close(self) -> None:
        try:
            super().close()
        finally:
            pool: Any = self.connection_pool
            pool.sentinel_manager.close()


def redis_client(
    url: str,
    *,
    sentinel_username: str | None = None,
    sentinel_password: str | None = None,
    **options: Any,
) -> Any:
    """A new client for ``url`` with redis-py's connection ``options``; connects lazily (a
    cluster client reads the cluster's layout at once: ``RedisClusterException`` when no
    node answers). ``sentinel_*`` authenticate to the Sentinels themselves."""
    target = parse_redis_url(url)
    if target.kind == "server":
        return redis.Redis.from_url(url, **options)
    auth: dict[str, Any] = {"username": target.username, "password": target.password}
    if target.kind == "cluster":
        node: Any = ClusterNode  # untyped in redis-py
        nodes = [node(host, port) for host, port in target.nodes]
        return RedisCluster(startup_nodes=nodes, **auth, **options)
    sentinel_options = {k: v for k, v in options.items() if k in _SOCKET}
    sentinel_options.update(username=sentinel_username, password=sentinel_password)
    # Each Sentinel is asked once per lookup (the next one is asked instead); the lookup
    # itself is retried with the connection to the master.
    sentinel_options["retry"] = Retry(NoBackoff(), 0)
    manager: Any = Sentinel  # untyped in redis-py
    sentinels = manager(list(target.nodes), sentinel_kwargs=sentinel_options)
    return sentinels.master_for(
        target.service,
        redis_class=SentinelMaster,
        connection_pool_class=SentinelConnectionPool,
        connection_class=_MasterConnection,
        db=target.db,
        **auth,
        **options,
    )
