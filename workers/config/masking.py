"""What a value may look like where people read it: secrets as ``***``, long values capped.

``mask_url`` hides the credentials of one URL (or a ``;``-separated list of them), whatever
its form; ``mask_text`` does the same in free text (error messages, log lines) and also hides
known secret strings wherever they appear; ``clip`` caps a value's repr.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

MASK = "***"
# Echoed values longer than this are cut, with their length said.
CLIP = 200
# Known secrets shorter than this are not searched for in free text: it would garble every
# message (and a one- or two-character password hides nothing).
MIN_SECRET = 3
# Python refuses to write an int of more than 4300 digits (about 14,000 bits) in decimal.
_REPR_INT_BITS = 14_000

_SCHEME = r"[A-Za-z][A-Za-z0-9+.-]*://"
# A list of URLs (Redis Sentinel, broker failover) is split only before another scheme, so a
# password containing ';' stays in one piece.
_LIST_SPLIT = re.compile(rf";(?=\s*{_SCHEME})")
_URL_IN_TEXT = re.compile(rf"{_SCHEME}[^\s'\"<>`]*")
# Query parameters that carry credentials (redis-py reads ?password=).
_SECRET_PARAM = re.compile(
    r"([?&;][^=&;#?]*(?:pass|pwd|secret|token|credential|auth)[^=&;#?]*=)([^&;#]*)",
    re.IGNORECASE,
)


def mask_url(url: str) -> str:
    """``url`` with every password replaced by ``***``; works on malformed URLs too.

    ``scheme://user:pw@host`` -> ``scheme://user:***@host``; ``scheme://:pw@host`` ->
    ``scheme://:***@host``; a user part without ``:`` (``redis://pw@host``, often a password
    written in the wrong place) is masked whole: ``redis://***@host``. Credentials in the
    query (``?password=``) are masked too, and so is each URL of a ``;``-separated list.
    """
    return ";".join(_mask_one(part) for part in _LIST_SPLIT.split(url))


def _mask_one(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    at = rest.rfind("@")
    if at >= 0:
        # Everything before the last '@' is the user part, even when an unencoded '/', '?' or
        # '#' in a password would make a URL parser see a path: never show any of it.
        user, colon, _ = rest[:at].partition(":")
        rest = (f"{user}:{MASK}" if colon else MASK) + rest[at:]
    rest = _SECRET_PARAM.sub(lambda m: m.group(1) + MASK, rest)
    return f"{scheme}{sep}{rest}"


def url_secrets(url: str) -> set[str]:
    """The passwords (and password-like user parts) of ``url``, raw and percent-decoded."""
    found: set[str] = set()
    for part in _LIST_SPLIT.split(url):
        rest = part.partition("://")[2] or part
        at = rest.rfind("@")
        if at >= 0:
            user, colon, password = rest[:at].partition(":")
            found.add(password if colon else user)
        found.update(m.group(2) for m in _SECRET_PARAM.finditer(rest))
    return {form for s in found if s for form in (s, unquote(s))}


def mask_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Free text with the credentials of every URL in it masked, and every known secret
    (longest first, so one that contains another goes whole) replaced by ``***``."""
    text = _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)
    for secret in sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def secrets_in(conf: Mapping[str, Any], environ: Mapping[str, str]) -> set[str]:
    """Every secret the Celery config and the environment hold that could end up in a message:
    passwords of the broker, result backend and Redis URLs (and the Redis Sentinels'), and the
    secret Kafka options (see ``kafka_options.SECRET_OPTIONS``) of every cluster, configured or
    from the environment."""
    from workers.config.kafka_options import SECRET_OPTIONS

    found: set[str] = set()
    for key in ("broker_url", "broker_read_url", "broker_write_url", "result_backend",
                "workers_redis_url"):  # fmt: skip
        found |= _urls_secrets(_get(conf, key))
    sentinel_password = _get(conf, "workers_redis_sentinel_password")
    if isinstance(sentinel_password, str):
        found.add(sentinel_password)
    clusters = _get(conf, "workers_kafka_clusters")
    for cluster in clusters.values() if isinstance(clusters, Mapping) else ():
        for level in _levels(cluster):
            found.update(v for k, v in level.items() if k in SECRET_OPTIONS and isinstance(v, str))
    upper = tuple("_" + name.upper() for name in SECRET_OPTIONS)
    for var, value in environ.items():
        if var.endswith(("_URL", "_BROKER", "_BACKEND")):
            found |= url_secrets(value)
        elif var == "WORKERS_REDIS_SENTINEL_PASSWORD" or (
            var.startswith("WORKERS_") and var.endswith(upper)
        ):
            found.add(value)
    return {s for s in found if s}


def _get(conf: Mapping[str, Any], key: str) -> Any:
    try:
        return conf.get(key)
    except Exception:  # noqa: BLE001 - a broken config must not hide the error it caused
        return None


def _urls_secrets(value: Any) -> set[str]:
    if isinstance(value, str):
        return url_secrets(value)
    if isinstance(value, list | tuple):
        return {s for v in value if isinstance(v, str) for s in url_secrets(v)}
    return set()


def _levels(cluster: Any) -> list[Mapping[str, Any]]:
    if not isinstance(cluster, Mapping):
        return []
    roles = [cluster.get("producer"), cluster.get("consumer")]
    return [cluster, *(role for role in roles if isinstance(role, Mapping))]


def clip(text: str, limit: int = CLIP) -> str:
    """``text`` cut to about ``limit`` characters (saying how long it was), non-printable
    characters escaped so it stays on one line."""
    cut = text if len(text) <= limit else text[:limit]
    if not cut.isprintable():
        cut = "".join(c if c.isprintable() else repr(c)[1:-1] for c in cut)[:limit]
    return cut if len(text) <= limit else f"{cut}… ({len(text)} characters)"


def shown(value: Any, limit: int = CLIP) -> str:
    """The repr of ``value`` as an error may show it: about ``limit`` characters at most (a
    longer one ends in ``…`` and its length), on one line, never failing."""
    if isinstance(value, str) and len(value) > limit:
        head = repr(value[:limit])
        if len(head) > limit + 2:  # escapes made it longer: cut it, keep it quoted
            head = head[: limit + 1] + head[0]
        return f"{head}… ({len(value)} characters)"
    if isinstance(value, int) and value.bit_length() > _REPR_INT_BITS:
        # repr() of an integer beyond 4300 digits raises; its size is what matters anyway.
        return f"<an integer of about {int(value.bit_length() * 0.30103) + 1} digits>"
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a value whose repr fails is still reported
        text = f"<{type(value).__name__} object>"
    return clip(text, limit)


class Shown:
    """Stands for a value in a ``ConfigError`` when its own repr is too long or unsafe to
    print: its repr is the capped form."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Shown) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def for_error(value: Any) -> Any:
    """``value`` itself when its repr is short and on one line, else a ``Shown`` of it."""
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, str) and len(value) <= CLIP:
        return value  # repr() escapes every non-printable character
    if isinstance(value, int) and value.bit_length() <= 600:  # at most 181 digits
        return value
    text = shown(value)
    try:
        same = repr(value) == text
    except Exception:  # noqa: BLE001 - shown() has reported it already
        same = False
    return value if same else Shown(text)
