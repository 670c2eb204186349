"""The forms of ``workers_redis_url``: one server, a master found through Redis Sentinel, or a
Redis Cluster. Parsed here once, for the settings' checks and for building the client.

- ``redis://``, ``rediss://``, ``unix://``: one server (redis-py's own URL forms);
- ``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]``: the master
  that the Sentinels at those addresses know as ``service``; the URL's credentials are the
  master's (and its replicas'), the Sentinels' own are ``workers_redis_sentinel_*``;
- ``redis+cluster://[user:password@]host:port[,host:port...]``: a Redis Cluster, reached
  through any of those nodes (the others are discovered); database 0 only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

from workers.config.fields import fail, redis_url
from workers.config.masking import MASK, mask_url
from workers.config.model import RedisConfig

Kind = Literal["server", "sentinel", "cluster"]
SENTINEL = "redis+sentinel"
CLUSTER = "redis+cluster"

_HOSTPORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})")
# Sentinel master names as people write them in sentinel.conf (no spaces, no '/').
_SERVICE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_DB = re.compile(r"[0-9]{1,5}")
_FORMS = {
    SENTINEL: "redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]",
    CLUSTER: "redis+cluster://[user:password@]host:port[,host:port...]",
}


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where the package's Redis is. ``nodes`` are the Sentinels (``sentinel``) or the
    cluster's seed nodes (``cluster``); ``username``/``password`` those of the data nodes."""

    kind: Kind
    url: str
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:
        return f"RedisTarget(kind={self.kind!r}, url={mask_url(self.url)!r})"


def parse_redis_url(url: str) -> RedisTarget:
    """The target of a URL already checked by ``check_redis_url`` (or any plain Redis URL).
    Raises ``ValueError`` saying what is wrong with a Sentinel or Cluster URL."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _FORMS:
        return RedisTarget("server", url)
    form = _FORMS[scheme]
    if "?" in rest or "#" in rest:
        raise ValueError(f"{form} (no query or fragment)")
    at = rest.rfind("@")
    userinfo, rest = (rest[:at], rest[at + 1 :]) if at >= 0 else (None, rest)
    hosts, _, path = rest.partition("/")
    nodes = tuple(_node(item, form) for item in hosts.split(","))
    username = password = None
    if userinfo is not None:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    if scheme == CLUSTER:
        if path not in ("", "0"):
            raise ValueError(f"{form} (a cluster has database 0 only: no path, or /0)")
        return RedisTarget("cluster", url, nodes, username=username, password=password)
    service, _, db = path.partition("/")
    db = db.removesuffix("/")
    if not _SERVICE.fullmatch(service):
        raise ValueError(f"{form} (the service: 1-128 of [A-Za-z0-9._:-], as in sentinel.conf)")
    if db and not _DB.fullmatch(db):
        raise ValueError(f"{form} (the database: a number such as /0)")
    return RedisTarget(
        "sentinel", url, nodes, service, int(db or 0), username=username, password=password
    )


def _node(item: str, form: str) -> tuple[str, int]:
    m = _HOSTPORT.fullmatch(item.strip()) if len(item) <= 300 else None
    if m is None or not 1 <= int(m.group(2)) <= 65535:
        raise ValueError(f"{form} (each address host:port, with a port between 1 and 65535)")
    return m.group(1).strip("[]"), int(m.group(2))


def check_redis_url(key: str, value: str) -> str:
    """The check of ``workers_redis_url``: a plain Redis URL, or a Sentinel or Cluster one."""
    scheme = value.partition("://")[0].lower()
    if scheme not in _FORMS or any(c.isspace() for c in value):
        return redis_url(key, value)
    try:
        parse_redis_url(value)
    except ValueError as exc:
        raise fail(key, mask_url(value), f"a URL such as {exc}") from None
    return value


def redis_config(top: Mapping[str, Any]) -> RedisConfig:
    """The ``RedisConfig`` of the checked top-level settings. ``workers_redis_sentinel_*``
    go with a Sentinel URL only (set with another, they would be ignored in silence: a URL
    pointed at one server by mistake, say); ``workers_redis_wait_replicas`` defaults to 1
    with a Sentinel URL, else 0, and cannot be used on a cluster."""
    kind = parse_redis_url(top["workers_redis_url"]).kind
    for key in ("workers_redis_sentinel_username", "workers_redis_sentinel_password"):
        if kind != "sentinel" and top.get(key) is not None:
            shown = MASK if key.endswith("password") else top[key]
            raise fail(key, shown, "None unless workers_redis_url is a redis+sentinel:// URL")
    replicas = top["workers_redis_wait_replicas"]
    if kind == "cluster" and replicas:
        expected = "0 or None with a redis+cluster:// URL (a cluster's writes go to many masters)"
        raise fail("workers_redis_wait_replicas", replicas, expected)
    return RedisConfig(
        url=top["workers_redis_url"],
        key_prefix=top["workers_redis_key_prefix"],
        socket_timeout=float(top["workers_redis_socket_timeout"]),
        offset_ttl_seconds=top["workers_offset_ttl_seconds"],
        sentinel_username=top["workers_redis_sentinel_username"],
        sentinel_password=top["workers_redis_sentinel_password"],
        wait_replicas=(1 if kind == "sentinel" else 0) if replicas is None else replicas,
    )
