"""The package's Redis client through Sentinel and on a Redis Cluster, on real servers: built
from the settings, the Sentinels' password kept apart from the master's, alert state that
waits for a replica, a Redis that is gone reported as a ``RecoverableError`` within the
timeout, and ``workers check`` saying where the data is."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.integration.alarm_state_support import B, event
from tests.integration.cli_support import Cli
from tests.integration.redis_ha import SENTINEL_PASSWORD, SERVICE, ClusterSet, SentinelSet
from workers.alarms.state import AlertStore
from workers.config import Settings
from workers.connections import Connections
from workers.connections.redis_clients import SentinelMaster
from workers.exceptions import RecoverableError
from workers.state.keys import Space
from workers.state.offsets import RedisOffsetStore

pytestmark = pytest.mark.integration


def sentinel_settings(settings_factory: Any, sentinels: SentinelSet, **extra: Any) -> Settings:
    conf = {"workers_redis_url": sentinels.url,
            "workers_redis_sentinel_password": SENTINEL_PASSWORD, **extra}  # fmt: skip
    settings: Settings = settings_factory(**conf)
    return settings


def test_the_settings_of_a_sentinel_url_give_a_client_of_the_current_master(
    settings_factory: Any, redis_sentinels: SentinelSet, key_prefix: str
) -> None:
    settings = sentinel_settings(settings_factory, redis_sentinels)
    connections = Connections(settings)
    try:
        client = connections.redis()
        client.set(f"{key_prefix}:probe", "1")

        master = redis_sentinels.current_master().client()
        assert isinstance(client, SentinelMaster)
        assert master.get(f"{key_prefix}:probe") == b"1"
        assert settings.redis.wait_replicas == 1  # the default with Sentinel
    finally:
        master.delete(f"{key_prefix}:probe")
        connections.close()


def test_a_wrong_sentinel_password_is_a_recoverable_error_that_names_no_secret(
    settings_factory: Any, redis_sentinels: SentinelSet, key_prefix: str
) -> None:
    settings = sentinel_settings(
        settings_factory, redis_sentinels, workers_redis_sentinel_password="not-it-3b1"
    )
    connections = Connections(settings)
    space = Space(key_prefix, "common", "g1", "topic-a")
    started = time.monotonic()
    try:
        with pytest.raises(RecoverableError) as caught:
            RedisOffsetStore(connections.redis()).read(space, [0])
    finally:
        connections.close()

    assert time.monotonic() - started < 30
    assert f"No master found for '{SERVICE}'" in str(caught.value)
    assert "not-it-3b1" not in str(caught.value) and SENTINEL_PASSWORD not in str(caught.value)


def test_alert_state_counts_as_applied_only_once_a_replica_has_it(
    settings_factory: Any, redis_sentinels: SentinelSet, redis_client: redis.Redis, key_prefix: str
) -> None:
    connections = Connections(sentinel_settings(settings_factory, redis_sentinels))
    try:
        with_replica = AlertStore(connections.redis(), key_prefix, 3600, replicas=1)
        alone = AlertStore(redis_client, key_prefix, 3600, replicas=1, replica_timeout_ms=50)

        applied = with_replica.apply([event(1, B)])
        with pytest.raises(RecoverableError, match="only 0 of 1 replicas had them"):
            alone.apply([event(2, B)])
    finally:
        master = redis_sentinels.current_master().client()
        keys = list(master.scan_iter(match=f"{key_prefix}:*"))
        if keys:
            master.delete(*keys)
        connections.close()

    assert [a.outcome for a in applied] == ["opened"]
    assert alone.get(event(2, B)["fingerprint"]) is not None  # applied, yet not yet safe


def test_a_stopped_cluster_master_fails_only_its_slots_and_within_the_timeout(
    settings_factory: Any, key_prefix: str
) -> None:
    cluster = ClusterSet().start()
    try:
        connections = Connections(settings_factory(workers_redis_url=cluster.url))
        client = connections.redis()
        store = RedisOffsetStore(client)
        spaces = [Space(key_prefix, "common", "g1", f"topic-{i}") for i in range(30)]
        on = {client.get_node_from_key(s.key("offsets")).port: s for s in spaces}
        assert len(on) == 3  # the spaces lie on every master
        store.reset(on[cluster.nodes[0].port], {0: 5})
        cluster.nodes[1].stop()

        started = time.monotonic()
        with pytest.raises(RecoverableError):
            store.reset(on[cluster.nodes[1].port], {0: 5})
        took = time.monotonic() - started
        alive = store.read(on[cluster.nodes[0].port], [0])
        connections.close()
    finally:
        cluster.stop()

    assert took < 30
    assert alive[0].offset == 5


def test_check_says_where_the_data_is(
    cli: Cli, redis_sentinels: SentinelSet, redis_cluster: ClusterSet
) -> None:
    cli.conf["workers_redis_url"] = redis_sentinels.url
    cli.conf["workers_redis_sentinel_password"] = SENTINEL_PASSWORD
    through_sentinel = cli("check")
    cli.conf["workers_redis_wait_replicas"] = 2
    short_of_replicas = cli("check")
    cli.conf["workers_redis_url"] = redis_cluster.url
    del cli.conf["workers_redis_sentinel_password"], cli.conf["workers_redis_wait_replicas"]
    on_cluster = cli("check")

    port = redis_sentinels.current_master().port
    assert through_sentinel.exit_code == 0, through_sentinel.output
    assert (
        f"ok    redis redis+sentinel://:***@127.0.0.1:{redis_sentinels.sentinels[0].port},"
        in through_sentinel.stdout
    )
    assert (
        f"master 127.0.0.1:{port} of Sentinel service '{SERVICE}' (3 Sentinels), 1 replica(s)"
        in through_sentinel.stdout
    )
    assert short_of_replicas.exit_code == 0, short_of_replicas.output  # a warning
    assert "WARN  redis redis+sentinel://" in short_of_replicas.stdout
    assert "1 replica(s): fewer than the 2 that alert state waits for" in short_of_replicas.stdout
    assert on_cluster.exit_code == 0, on_cluster.output
    assert "cluster of 3 masters: state ok, 16384 of 16384 slots served" in on_cluster.stdout


def test_check_names_a_wrong_sentinel_password_and_never_shows_either_password(
    cli: Cli, redis_sentinels: SentinelSet, tmp_path: Path
) -> None:
    cli.conf["workers_redis_url"] = redis_sentinels.url
    env = {"WORKERS_REDIS_SENTINEL_PASSWORD": "wrong-pw-5e2"}

    proc = cli.subprocess(tmp_path, "--timeout", "2", "check", env=env)
    out, err = proc.communicate(timeout=120)

    assert proc.returncode == 1, out + err
    assert "FAIL  redis redis+sentinel://:***@" in out
    assert f"No master found for '{SERVICE}'" in out
    assert "wrong-pw-5e2" not in out + err and "data-pw" not in out + err
