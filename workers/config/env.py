"""Environment overrides: the origin's variable names and the general ``WORKERS_*`` form.

Precedence, lowest first: the Celery config, the origin's names (``KAFKA_HOST``, ...), then
``WORKERS_*``. Values are converted to the setting's kind here, so a bad value names the
variable it came from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from workers.config import kafka_options as ko
from workers.config.fields import MASK, Field, fail
from workers.config.specs import CLUSTER, PIPELINE, TOP

_ANY = Field("any", "a kafka-python option value")

# Origin names: cluster -> (host variable, port variable).
ORIGIN_CLUSTERS = {
    "common": ("KAFKA_HOST", "KAFKA_PORT"),
    "alert": ("ALERT_KAFKA_HOST", "ALERT_KAFKA_PORT"),
}
ORIGIN_GROUP = "KAFKA_CONSUMER_GROUP"


# -- converting the text of a variable ------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
# ASCII only: int() and float() also take other scripts' digits, '_' separators, 'nan', 'inf'.
_INT = re.compile(r"[+-]?[0-9]{1,4000}")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")
# Spaces and tabs around a number or a word are forgiven; a line break is not.
_BLANK = " \t"


def _int(text: str) -> int | None:
    text = text.strip(_BLANK)
    return int(text) if _INT.fullmatch(text) else None


def _float(text: str) -> float | None:
    text = text.strip(_BLANK)
    if len(text) > 100 or not _FLOAT.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None  # 1e400 reads as inf: refused as written


def from_env(var: str, field: Field, text: str) -> Any:
    """Convert an environment string to the field's kind; errors name the variable."""
    word = text.strip(_BLANK).lower()
    if field.nullable and word in ("", "none", "null"):
        return None
    value: Any = text
    if field.kind == "int":
        value = _int(text)
    elif field.kind == "float":
        value = _float(text)
    elif field.kind == "bool":
        value = word in _TRUE if word in _TRUE | _FALSE else None
    elif field.kind == "list":
        value = [item.strip() for item in text.split(",") if item.strip()]
    elif field.kind == "dict":
        value = None
    elif field.kind == "any":
        value = _any_from_env(text)
    if value is None:
        raise fail(var, text, field.expected, field)
    return value


def _any_from_env(text: str) -> Any:
    """An integer if the text is one, else a (finite) number, else a boolean, else the text."""
    for convert in (_int, _float):
        number = convert(text)
        if number is not None:
            return number
    word = text.strip(_BLANK).lower()
    if word in ("true", "false"):
        return word == "true"
    return text


def _cluster_keys() -> dict[str, tuple[tuple[str, ...], Field]]:
    """Env suffix (upper case) -> (path inside a cluster mapping, field)."""
    keys: dict[str, tuple[tuple[str, ...], Field]] = {}
    for name, field in CLUSTER.items():
        if field.kind != "dict":
            keys[name.upper()] = ((name,), field)
    for role, spec in (("common", ko.COMMON), ("producer", ko.PRODUCER), ("consumer", ko.CONSUMER)):
        accepted = {n for n in ko.PRODUCER_NAMES | ko.CONSUMER_NAMES if ko.passthrough(role)(n)}
        for name in accepted | set(spec):
            path = (name,) if role == "common" else (role, name)
            keys["_".join(path).upper()] = (path, spec.get(name, _ANY))
    return keys


CLUSTER_ENV_KEYS = _cluster_keys()
PIPELINE_ENV_KEYS = {name.upper(): ((name,), f) for name, f in PIPELINE.items()}
TOP_ENV_KEYS = {name.upper(): name for name, f in TOP.items() if f.kind not in ("dict",)}


# WORKERS_* variables that are not settings: read by the command, the demo, tests, benchmarks.
FOREIGN_NAMES = frozenset({"WORKERS_CELERY_CONFIG", "WORKERS_APP"})
FOREIGN_PREFIXES = ("WORKERS_TEST_", "WORKERS_DEMO_", "WORKERS_BENCH_", "WORKERS_CHAOS_")
FOREIGN_HELP = ", ".join([*sorted(FOREIGN_NAMES), *(p + "*" for p in FOREIGN_PREFIXES)])


def _foreign(var: str) -> bool:
    return var in FOREIGN_NAMES or var.startswith(FOREIGN_PREFIXES)


def env_name(name: str) -> str:
    """The upper-case form of a cluster or pipeline name inside a variable name."""
    return name.upper().replace("-", "_")


def _split(rest: str, keys: Mapping[str, Any], var: str, form: str) -> tuple[str, str]:
    """Split ``<NAME>_<KEY>`` at the longest known key suffix."""
    for key in sorted(keys, key=len, reverse=True):
        if rest.endswith("_" + key) and len(rest) > len(key) + 1:
            return rest[: -len(key) - 1], key
    # The value may be a mistyped secret: never show it.
    raise fail(var, MASK, f"{form} with a known setting (see the configuration reference)")


def _find(existing: Mapping[str, Any], env_part: str) -> str:
    for name in existing:
        if isinstance(name, str) and env_name(name) == env_part:
            return name
    return env_part.lower()


def _copy_maps(value: Any, depth: int = 3) -> Any:
    """Copy nested mappings so overrides never mutate the Celery config; leaves (an
    ``ssl_context``, a token provider) stay the very objects that were configured.

    Settings nest three mappings deep at most (clusters, a cluster, its producer); deeper
    values are option values, kept as they are, so a mapping that contains itself cannot
    recurse forever."""
    if isinstance(value, Mapping) and depth > 0:
        return {k: _copy_maps(v, depth - 1) for k, v in value.items()}
    return value


def _mapping(raw: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise fail(name, value, TOP[name].expected)
    return dict(value)


def _put(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        inner = target.get(part)
        target[part] = dict(inner) if isinstance(inner, Mapping) else {}
        target = target[part]
    target[path[-1]] = value


def apply_env(
    conf: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Return the ``workers_*`` settings with overrides applied, and key path -> variable."""
    raw: dict[str, Any] = {k: _copy_maps(v) for k, v in conf.items()}
    sources: dict[str, str] = {}
    clusters = _mapping(raw, "workers_kafka_clusters")
    pipelines = _mapping(raw, "workers_pipelines")

    for cluster, (host_var, port_var) in ORIGIN_CLUSTERS.items():
        if environ.get(host_var):
            port = environ.get(port_var) or "9092"
            servers = [f"{h.strip()}:{port}" for h in environ[host_var].split(",") if h.strip()]
            entry = dict(clusters.get(cluster) or {})
            entry["bootstrap_servers"] = servers
            clusters[cluster] = entry
            sources[f"workers_kafka_clusters.{cluster}.bootstrap_servers"] = (
                f"{host_var}/{port_var}" if environ.get(port_var) else host_var
            )
    if environ.get(ORIGIN_GROUP):
        raw["workers_default_group"] = environ[ORIGIN_GROUP]
        sources["workers_default_group"] = ORIGIN_GROUP

    for var in sorted(environ):
        text = environ[var]
        if var.startswith("WORKERS_KAFKA_"):
            part, key = _split(
                var[len("WORKERS_KAFKA_") :],
                CLUSTER_ENV_KEYS,
                var,
                "WORKERS_KAFKA_<CLUSTER>_<SETTING>",
            )
            target_map, prefix = clusters, "workers_kafka_clusters"
            path, field = CLUSTER_ENV_KEYS[key]
        elif var.startswith("WORKERS_PIPELINE_"):
            part, key = _split(
                var[len("WORKERS_PIPELINE_") :],
                PIPELINE_ENV_KEYS,
                var,
                "WORKERS_PIPELINE_<NAME>_<SETTING>",
            )
            target_map, prefix = pipelines, "workers_pipelines"
            path, field = PIPELINE_ENV_KEYS[key]
        elif var in TOP_ENV_KEYS:
            name = TOP_ENV_KEYS[var]
            raw[name] = from_env(var, TOP[name], text)
            sources[name] = var
            continue
        elif var.startswith("WORKERS_") and not _foreign(var):
            # A misspelt name would otherwise be ignored and its default used in silence.
            expected = ("a known top-level setting (see the configuration reference); "
                        f"names the package reads otherwise: {FOREIGN_HELP}")  # fmt: skip
            raise fail(var, MASK, expected)
        else:
            continue
        name = _find(target_map, part)
        entry = dict(target_map.get(name) or {})
        _put(entry, path, from_env(var, field, text))
        target_map[name] = entry
        sources[".".join((prefix, name, *path))] = var

    if clusters:
        raw["workers_kafka_clusters"] = clusters
    if pipelines:
        raw["workers_pipelines"] = pipelines
    return raw, sources
