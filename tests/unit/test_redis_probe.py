"""``workers check``'s words on a Redis Cluster that cannot serve every slot (the real
cluster's healthy case is in ``tests/integration/test_redis_ha.py``)."""

from __future__ import annotations

from typing import Any

from redis.cluster import RedisCluster

from workers.ops.redis_probe import describe


class Answering(RedisCluster):
    """A cluster client that connects nowhere and answers INFO and CLUSTER INFO as given."""

    def __init__(self, state: dict[str, str]) -> None:  # no super().__init__: no connection
        self.state = state

    def info(self, *args: Any, **kwargs: Any) -> Any:
        return {f"10.0.0.{i}:6379": {"redis_version": "7.0.15"} for i in range(3)}

    def cluster_info(self, *args: Any, **kwargs: Any) -> Any:
        return self.state


def test_a_cluster_with_slots_no_master_serves_fails() -> None:
    down = Answering({"cluster_state": "fail", "cluster_slots_ok": "10923"})
    healthy = Answering({"cluster_state": "ok", "cluster_slots_ok": "16384"})

    assert describe(down) == (
        "fail",
        "Redis 7.0.15, cluster of 3 masters: state fail, 10923 of 16384 slots served",
    )
    assert describe(healthy)[0] == "ok"
