"""Declarative field specs: type checks, coercion of environment strings, and secret masking.

Every setting is described by a ``Field``; ``check_mapping`` validates one config mapping
against a table of them and raises ``ConfigError`` naming the exact key path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from workers.exceptions import ConfigError

MASK = "***"
REQUIRED: Any = object()
# Default of an optional pass-through option: left out entirely when not configured.
ABSENT: Any = object()

# A check takes (key path, value), raises ConfigError when the value is bad, returns it normalised.
Check = Callable[[str, Any], Any]


@dataclass(frozen=True, slots=True)
class Field:
    """One setting: its kind (for type checks and env coercion), default and extra check.

    ``kind`` is one of ``str``, ``int``, ``float``, ``bool``, ``list``, ``dict`` or ``any``.
    ``check`` may normalise the value: it returns the value to keep.
    """

    kind: str
    expected: str
    default: Any = REQUIRED
    check: Check | None = None
    secret: bool = False
    nullable: bool = False


def masked(field: Field | None, value: Any) -> Any:
    """The value as it may appear in an error, a repr or a log line."""
    if field is not None and field.secret and value not in (None, ""):
        return MASK
    return value


def fail(key: str, value: Any, expected: str, field: Field | None = None) -> ConfigError:
    return ConfigError(key, masked(field, value), expected)


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "any":
        return True
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "list":
        return isinstance(value, list | tuple)
    if kind == "dict":
        return isinstance(value, Mapping)
    raise AssertionError(f"unknown field kind {kind!r}")


def check_value(key: str, field: Field, value: Any) -> Any:
    """Validate one value against its field; returns the (possibly normalised) value."""
    if value is None and field.nullable:
        return None
    if not _type_ok(field.kind, value):
        raise fail(key, value, field.expected, field)
    if field.check is not None:
        return field.check(key, value)
    return value


def check_mapping(
    prefix: str,
    spec: Mapping[str, Field],
    raw: Any,
    *,
    extra_ok: Callable[[str], bool] | None = None,
) -> dict[str, Any]:
    """Validate ``raw`` against ``spec``: unknown keys, missing required keys, types, checks.

    ``extra_ok(name)`` may accept keys that are not in ``spec`` (kept as they are).
    """
    if not isinstance(raw, Mapping):
        raise fail(prefix, raw, "a mapping of settings")
    out: dict[str, Any] = {}
    for name, value in raw.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        field = spec.get(name)
        if field is None:
            if not isinstance(name, str) or extra_ok is None or not extra_ok(name):
                known = ", ".join(sorted(spec))
                # The value of a mistyped key may be a secret: never show it.
                raise fail(key, MASK, f"a known key ({known})")
            out[name] = value
            continue
        out[name] = check_value(key, field, value)
    for name, field in spec.items():
        if name not in out:
            if field.default is REQUIRED:
                where = f"{prefix}.{name}" if prefix else name
                raise fail(where, None, f"{field.expected} (required)")
            if field.default is not ABSENT:
                out[name] = field.default
    return out


# -- reusable checks ---------------------------------------------------------------------------


def choice(*options: Any) -> Check:
    def _check(key: str, value: Any) -> Any:
        if value not in options:
            raise fail(key, value, "one of " + ", ".join(repr(o) for o in options))
        return value

    return _check


def at_least(low: float, high: float | None = None, why: str = "") -> Check:
    def _check(key: str, value: Any) -> Any:
        # Written so that NaN fails too: every comparison with NaN is false.
        ok = math.isfinite(value) and value >= low and (high is None or value <= high)
        if not ok:
            bound = f">= {low:g}" if high is None else f"between {low:g} and {high:g}"
            raise fail(key, value, f"a value {bound}{why}")
        return value

    return _check


_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_TASK = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_HOSTPORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


def topic_name(key: str, value: str) -> str:
    if not _TOPIC.match(value) or value in (".", ".."):
        raise fail(key, value, "a Kafka topic name: 1-249 of [A-Za-z0-9._-]")
    return value


def task_names(key: str, value: list[Any] | tuple[Any, ...]) -> tuple[str, ...]:
    if not value:
        raise fail(key, value, "a non-empty list of Celery task names")
    for i, name in enumerate(value):
        if not isinstance(name, str) or not _TASK.match(name):
            raise fail(
                f"{key}[{i}]", name, "a dotted Celery task name such as 'workers.alarms.parse'"
            )
    return tuple(value)


def host_ports(key: str, value: str | list[Any] | tuple[Any, ...]) -> tuple[str, ...]:
    """A list of ``host:port`` (or one comma-separated string); every entry is kept and used."""
    if not isinstance(value, str | list | tuple):
        raise fail(key, value, "a non-empty list of 'host:port'")
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    if not items or items == [""]:
        raise fail(key, value, "a non-empty list of 'host:port'")
    for i, item in enumerate(items):
        where = f"{key}[{i}]"
        if not isinstance(item, str):
            raise fail(where, item, "'host:port' as a string")
        m = _HOSTPORT.match(item)
        if m is None or not 1 <= int(m.group(2)) <= 65535:
            raise fail(where, item, "'host:port' with a port between 1 and 65535")
    return tuple(items)


def redis_url(key: str, value: str) -> str:
    expected = "a URL such as redis://host:6379/0, rediss:// or unix://"
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError:
        raise fail(key, mask_url(value), expected + " with a valid host and port") from None
    if parts.scheme not in ("redis", "rediss", "unix") or (
        parts.scheme != "unix" and not parts.hostname
    ):
        raise fail(key, mask_url(value), expected)
    if port is not None and not 1 <= port <= 65535:
        raise fail(key, mask_url(value), "a URL with a port between 1 and 65535")
    return value


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (works on malformed URLs too)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    netloc = f"{user}:{MASK}@{hostport}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# -- environment strings -----------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def from_env(var: str, field: Field, text: str) -> Any:
    """Convert an environment string to the field's kind; errors name the variable."""
    if field.nullable and text.strip().lower() in ("", "none", "null"):
        return None
    try:
        if field.kind == "int":
            return int(text)
        if field.kind == "float":
            return float(text)
        if field.kind == "bool":
            low = text.strip().lower()
            if low in _TRUE | _FALSE:
                return low in _TRUE
            raise ValueError(text)
        if field.kind == "list":
            return [item.strip() for item in text.split(",") if item.strip()]
        if field.kind == "dict":
            raise ValueError(text)
    except ValueError:
        raise fail(var, text, field.expected, field) from None
    if field.kind == "any":
        return _any_from_env(text)
    return text


def _any_from_env(text: str) -> Any:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    return text
