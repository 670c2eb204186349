"""``workers_redis_url`` in its Sentinel and Cluster forms, the Sentinels' credentials and
``workers_redis_wait_replicas``: what is accepted, the one-line error of what is not (secrets
masked), and the client options each form gives (built without connecting)."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from redis.exceptions import RedisClusterException

from tests.unit.config_support import SECRET, base_conf, load_error
from workers.config import load_settings
from workers.config.masking import secrets_in
from workers.config.redis_urls import parse_redis_url
from workers.connections import Connections, Factories
from workers.connections.clients import redis_options
from workers.connections.redis_clients import SentinelMaster, redis_client
from workers.exceptions import RecoverableError

SENTINELS = "s1.example:26379,s2.example:26380,[::1]:26381"


def settings_of(**top: Any) -> Any:
    return load_settings({**base_conf(), **top}, environ={})


@pytest.mark.parametrize(
    ("url", "kind", "nodes", "service", "db", "user", "password"),
    [
        (f"redis+sentinel://:{SECRET}@{SENTINELS}/mymaster/2", "sentinel",
         (("s1.example", 26379), ("s2.example", 26380), ("::1", 26381)), "mymaster", 2, None,
         SECRET),
        ("redis+sentinel://s1:1/svc.a-b:c", "sentinel", (("s1", 1),), "svc.a-b:c", 0, None,
         None),
        ("redis+sentinel://app:p%40ss@s1:1/svc/", "sentinel", (("s1", 1),), "svc", 0, "app",
         "p@ss"),
        ("REDIS+CLUSTER://n1:7000,n2:7001", "cluster", (("n1", 7000), ("n2", 7001)), "", 0,
         None, None),
        (f"redis+cluster://u:{SECRET}@n1:7000/0", "cluster", (("n1", 7000),), "", 0, "u",
         SECRET),
        ("redis://r:6379/3", "server", (), "", 0, None, None),
    ],
)  # fmt: skip
def test_a_url_gives_its_target(
    url: str, kind: str, nodes: Any, service: str, db: int, user: Any, password: Any
) -> None:
    target = parse_redis_url(url)

    assert (target.kind, target.nodes, target.service, target.db) == (kind, nodes, service, db)
    assert (target.username, target.password) == (user, password)
    assert SECRET not in repr(target)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+sentinel://s1/svc", "each address host:port, with a port between 1 and 65535"),
        ("redis+sentinel://s1:0/svc", "each address host:port"),
        ("redis+sentinel://s1:26379,,s2:1/svc", "each address host:port"),
        ("redis+sentinel://s1:26379", "the service: 1-128 of [A-Za-z0-9._:-]"),
        ("redis+sentinel://s1:26379/", "the service"),
        ("redis+sentinel://s1:26379/svc/x", "the database: a number such as /0"),
        ("redis+sentinel://s1:26379/svc/0/1", "the database"),
        ("redis+sentinel://s1:26379/svc?db=1", "no query or fragment"),
        ("redis+cluster://n1:7000/1", "a cluster has database 0 only"),
        ("redis+cluster://n1:7000?x", "no query or fragment"),
    ],
)
def test_a_bad_sentinel_or_cluster_url_is_one_line_naming_the_form_and_the_fault(
    url: str, why: str
) -> None:
    masked = url.replace("//", f"//:{SECRET}@", 1)

    exc = load_error({**base_conf(), "workers_redis_url": masked}, {})

    assert exc.key == "workers_redis_url"
    assert why in exc.expected and exc.expected.startswith("a URL such as redis+")
    assert SECRET not in str(exc) and "\n" not in str(exc)
    assert ":***@" in str(exc)


def test_a_misspelt_scheme_lists_every_form() -> None:
    exc = load_error({**base_conf(), "workers_redis_url": "redis+sentinal://s:1/svc"}, {})

    assert exc.expected == (
        "a URL such as redis://host:6379/0, rediss://, unix://, "
        "redis+sentinel://host:26379/service or redis+cluster://host:6379"
    )


def test_the_sentinels_password_is_masked_in_the_settings_and_known_as_a_secret() -> None:
    url = f"redis+sentinel://:{SECRET}@{SENTINELS}/mymaster"
    conf = {**base_conf(), "workers_redis_url": url, "workers_redis_sentinel_password": "sntl-7q"}

    settings = load_settings(conf, environ={})
    from_env = secrets_in({}, {"WORKERS_REDIS_SENTINEL_PASSWORD": "env-sntl-9"})

    assert settings.redis.sentinel_password == "sntl-7q"
    assert "sntl-7q" not in repr(settings.redis) and SECRET not in repr(settings.redis)
    assert "sentinel_password='***'" in repr(settings.redis)
    assert {"sntl-7q", SECRET} <= secrets_in(conf, {})
    assert from_env == {"env-sntl-9"}


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("workers_redis_sentinel_password", "sntl-7q", "'***'"),
        ("workers_redis_sentinel_username", "watcher", "'watcher'"),
    ],
)
def test_sentinel_credentials_need_a_sentinel_url(key: str, value: str, shown: str) -> None:
    exc = load_error({**base_conf(), key: value}, {})

    assert str(exc) == (
        f"{key}: got {shown}; expected None unless workers_redis_url is a redis+sentinel:// URL"
    )


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("workers_redis_sentinel_password", "", "the Sentinels' password (not empty), or None"),
        ("workers_redis_sentinel_username", "a b", "the Sentinels' user name (no spaces)"),
        ("workers_redis_wait_replicas", 17, "a value between 0 and 16"),
        ("workers_redis_wait_replicas", -1, "a value between 0 and 16"),
    ],
)
def test_bad_values_of_the_new_settings(key: str, value: Any, expected: str) -> None:
    url = f"redis+sentinel://{SENTINELS}/svc"

    exc = load_error({**base_conf(), "workers_redis_url": url, key: value}, {})

    assert exc.key == key and expected in exc.expected


@pytest.mark.parametrize(
    ("url", "configured", "resolved"),
    [
        (f"redis+sentinel://{SENTINELS}/svc", None, 1),
        (f"redis+sentinel://{SENTINELS}/svc", 0, 0),
        (f"redis+sentinel://{SENTINELS}/svc", 2, 2),
        ("redis://r:6379/0", None, 0),
        ("redis://r:6379/0", 1, 1),
        ("redis+cluster://n1:7000", None, 0),
        ("redis+cluster://n1:7000", 0, 0),
    ],
)
def test_wait_replicas_defaults_to_one_with_sentinel(
    url: str, configured: Any, resolved: int
) -> None:
    settings = settings_of(workers_redis_url=url, workers_redis_wait_replicas=configured)

    assert settings.redis.wait_replicas == resolved


def test_wait_replicas_is_refused_on_a_cluster_and_read_from_the_environment() -> None:
    conf = {**base_conf(), "workers_redis_url": "redis+cluster://n1:7000"}

    refused = load_error({**conf, "workers_redis_wait_replicas": 1}, {})
    from_env = load_settings(
        {**base_conf(), "workers_redis_url": f"redis+sentinel://{SENTINELS}/svc"},
        environ={"WORKERS_REDIS_WAIT_REPLICAS": "none", "WORKERS_REDIS_SENTINEL_PASSWORD": "x1"},
    )

    assert refused.key == "workers_redis_wait_replicas"
    assert refused.expected.startswith("0 or None with a redis+cluster:// URL")
    assert (from_env.redis.wait_replicas, from_env.redis.sentinel_password) == (1, "x1")


def test_the_options_of_a_sentinel_url_carry_the_sentinels_credentials_only_there() -> None:
    url = f"redis+sentinel://:{SECRET}@{SENTINELS}/mymaster"
    sentinel = settings_of(
        workers_redis_url=url,
        workers_redis_sentinel_username="w",
        workers_redis_sentinel_password="p",
    )
    plain = settings_of()

    options = redis_options(sentinel, url)

    assert (options["sentinel_username"], options["sentinel_password"]) == ("w", "p")
    assert "sentinel_password" not in redis_options(plain, plain.redis.url)


def test_a_sentinel_client_is_built_without_connecting_with_both_kinds_of_credentials() -> None:
    url = f"redis+sentinel://app:{SECRET}@127.0.0.1:9,127.0.0.1:10/mymaster/3"

    client = redis_client(
        url, sentinel_password="sntl", socket_timeout=2.5, socket_connect_timeout=1
    )
    try:
        pool: Any = client.connection_pool
        sentinels = pool.sentinel_manager.sentinels
        master_kwargs = pool.connection_kwargs
        sentinel_kwargs = sentinels[0].connection_pool.connection_kwargs

        assert isinstance(client, SentinelMaster) and pool.service_name == "mymaster"
        assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [9, 10]
        assert (master_kwargs["username"], master_kwargs["password"]) == ("app", SECRET)
        assert (master_kwargs["db"], master_kwargs["socket_timeout"]) == (3, 2.5)
        assert (sentinel_kwargs["password"], sentinel_kwargs["socket_timeout"]) == ("sntl", 2.5)
        assert sentinel_kwargs["socket_connect_timeout"] == 1
    finally:
        client.close()


def test_a_server_url_still_gives_a_plain_client() -> None:
    client = redis_client("redis://:pw@127.0.0.1:9/4", socket_timeout=1)

    assert type(client) is redis.Redis
    assert client.connection_pool.connection_kwargs["db"] == 4
    client.close()


def test_a_cluster_no_node_of_which_answers_is_an_outage_with_backoff() -> None:
    attempts: list[dict[str, Any]] = []

    def unreachable(**options: Any) -> Any:
        attempts.append(options)
        raise RedisClusterException("Redis Cluster cannot be connected. Please provide ...")

    settings = settings_of(workers_redis_url=f"redis+cluster://:{SECRET}@n1:7000")
    cache = Connections(settings, factories=Factories(redis=unreachable))

    with pytest.raises(RecoverableError, match="cannot create redis for redis") as first:
        cache.redis()
    with pytest.raises(RecoverableError, match="next attempt in"):
        cache.redis()

    assert len(attempts) == 1 and attempts[0]["url"] == settings.redis.url
    assert SECRET not in str(first.value)
