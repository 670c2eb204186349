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
from urllib.parse import urlsplit

from workers.config.masking import MASK, clip, for_error, mask_url
from workers.exceptions import ConfigError

__all__ = ["MASK", "mask_url"]  # re-exported: their home is workers.config.masking

REQUIRED: Any = object()
# Default of an optional pass-through option: left out entirely when not configured.
ABSENT: Any = object()
# Longest text any string setting may hold: more is a mistake (or an attack), never a name,
# a path (PATH_MAX) or a password.
MAX_TEXT = 4096
INT32_MAX = 2**31 - 1

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
    # How a secret text may be shown instead of '***' (a URL with its password masked).
    mask: Callable[[str], str] | None = None


def masked(field: Field | None, value: Any) -> Any:
    """The value as it may appear in an error, a repr or a log line."""
    if field is not None and field.secret and value not in (None, ""):
        return field.mask(value) if field.mask and isinstance(value, str) else MASK
    return value


def fail(key: str, value: Any, expected: str, field: Field | None = None) -> ConfigError:
    """The one-line error for ``key``: the value masked if secret, and capped (like the key)
    at about 200 characters with its length, control characters escaped."""
    return ConfigError(clip(key), for_error(masked(field, value)), expected)


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


def has_control(text: str) -> bool:
    """True when ``text`` holds a control character or a line break (a newline, NUL, ESC, DEL,
    the C1 controls, U+2028/U+2029)."""
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c in "\u2028\u2029" for c in text)


def check_value(key: str, field: Field, value: Any) -> Any:
    """Validate one value against its field; returns the (possibly normalised) value."""
    if value is None and field.nullable:
        return None
    if not _type_ok(field.kind, value):
        raise fail(key, value, field.expected, field)
    # The field's own check first: it says more precisely what is accepted.
    checked = value if field.check is None else field.check(key, value)
    if isinstance(value, str) and (len(value) > MAX_TEXT or has_control(value)):
        # A newline, NUL or escape sequence in a setting is never meant (a secrets file's
        # trailing newline, a pasted terminal sequence), and SASLprep refuses them anyway.
        limit = f"at most {MAX_TEXT} characters, no control characters"
        raise fail(key, value, f"{field.expected} ({limit})", field)
    return checked


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
        shown_name = name if isinstance(name, str) else repr(name)
        key = f"{prefix}.{shown_name}" if prefix else shown_name
        field = spec.get(name) if isinstance(name, str) else None
        if field is None:
            if not isinstance(name, str) or extra_ok is None or not extra_ok(name):
                known = ", ".join(sorted(spec))
                # The value of a mistyped key may be a secret: never show it.
                raise fail(key, MASK, f"a known key ({known})")
            out[name] = passed_through(key, value)
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


def passed_through(key: str, value: Any) -> Any:
    """An option passed to kafka-python unchecked is still refused when no option could mean
    it: NaN, infinity, an integer beyond 64 bits, text with control characters or too long
    (which kafka-python would only fail on later, with a traceback). Text is never shown: it
    may be a secret (a proxy URL)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise fail(key, value, "a finite number (a kafka-python option, passed through)")
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        raise fail(key, value, "an integer within 64 bits (a kafka-python option, passed through)")
    if isinstance(value, str) and (len(value) > MAX_TEXT or has_control(value)):
        expected = f"text of at most {MAX_TEXT} characters, no control characters"
        raise fail(key, MASK, f"{expected} (a kafka-python option, passed through)")
    return value


# -- reusable checks ---------------------------------------------------------------------------


def choice(*options: Any) -> Check:
    def _check(key: str, value: Any) -> Any:
        # Compared by type too: True is not 1, and 1.0 is not 1.
        if not any(isinstance(value, type(o)) and value == o for o in options):
            raise fail(key, value, "one of " + ", ".join(repr(o) for o in options))
        return value

    return _check


def number_text(value: float) -> str:
    """A bound as people write it: ``86400``, ``0.1``, ``2147483647`` (never ``8.64e+04``)."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def at_least(low: float, high: float, why: str = "") -> Check:
    """A number from ``low`` to ``high``. Every numeric setting has both bounds, so a value
    that passes always fits a float (and the clients' int32/int64 fields)."""

    def _check(key: str, value: Any) -> Any:
        # Floats are checked for NaN and infinity first (every comparison with NaN is false);
        # ints are compared exactly, however large: 10**400 is just out of range.
        ok = (not isinstance(value, float) or math.isfinite(value)) and low <= value <= high
        if not ok:
            bound = f"between {number_text(low)} and {number_text(high)}"
            raise fail(key, value, f"a value {bound}{why}")
        return value

    return _check


_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_TASK = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_HOSTPORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})")
# A Redis URL's port, when one is given: ASCII digits (urlsplit takes other digits too).
_PORT = re.compile(r"[0-9]{1,5}")
# ... and its path a database number (redis-py reads it with int(), any size).
_DB = re.compile(r"/?(?:[0-9]{1,5}/?)?")


def topic_name(key: str, value: str) -> str:
    if not _TOPIC.fullmatch(value) or value in (".", ".."):
        raise fail(key, value, "a Kafka topic name: 1-249 of [A-Za-z0-9._-], not '.' or '..'")
    return value


def task_names(key: str, value: list[Any] | tuple[Any, ...]) -> tuple[str, ...]:
    if not value:
        raise fail(key, value, "a non-empty list of Celery task names")
    for i, name in enumerate(value):
        if not isinstance(name, str) or len(name) > 255 or not _TASK.fullmatch(name):
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
        m = _HOSTPORT.fullmatch(item) if len(item) <= 300 else None
        if m is None or not 1 <= int(m.group(2)) <= 65535:
            raise fail(where, item, "'host:port' with a port between 1 and 65535")
    return tuple(items)


def redis_url(key: str, value: str) -> str:
    expected = (
        "a URL such as redis://host:6379/0, rediss://, unix://, "
        "redis+sentinel://host:26379/service or redis+cluster://host:6379"
    )
    if any(c.isspace() for c in value):
        raise fail(key, mask_url(value), expected + " (no spaces or line breaks)")
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError:
        raise fail(key, mask_url(value), expected + " with a valid host and port") from None
    if parts.scheme not in ("redis", "rediss", "unix") or (
        parts.scheme != "unix" and not parts.hostname
    ):
        raise fail(key, mask_url(value), expected)
    given = parts.netloc.rpartition("@")[2].rpartition("]")[2].partition(":")[2]
    if port is not None and (not 1 <= port <= 65535 or not _PORT.fullmatch(given)):
        raise fail(key, mask_url(value), "a URL with a port between 1 and 65535")
    if parts.scheme != "unix" and not _DB.fullmatch(parts.path):
        raise fail(key, mask_url(value), "a URL whose path is a database number such as /0")
    return value
