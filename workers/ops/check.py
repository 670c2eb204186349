"""``workers check``: settings, Redis, the Celery broker, every cluster, the needed topics.

Each check gives one ``Finding``; a failed one carries a one-line reason and the name of the
README troubleshooting entry that explains it. Nothing secret is ever part of a finding.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis
from kafka.errors import KafkaError

from workers.config import mask_options, mask_url
from workers.exceptions import ConfigError, RecoverableError
from workers.ops.context import Ops
from workers.ops.topics import needed_topics


@dataclass(frozen=True, slots=True)
class Finding:
    """``level`` is ``ok``, ``warn`` or ``fail``; ``hint`` names a troubleshooting entry."""

    what: str
    level: str
    detail: str
    hint: str = ""

    @property
    def failed(self) -> bool:
        return self.level == "fail"


def run_checks(app: Any, timeout: float = 10.0) -> list[Finding]:
    """All checks, in order; stops after the settings when they do not load."""
    try:
        ops = Ops.for_app(app, timeout)  # loads the settings, once
    except ConfigError as exc:
        return [Finding("settings", "fail", str(exc), "settings wrong")]
    settings = ops.settings
    pipelines = ", ".join(sorted(settings.pipelines)) or "none"
    findings = [
        Finding(
            "settings", "ok", f"{_count(len(settings.clusters), 'cluster')}; pipelines: {pipelines}"
        )
    ]
    try:
        findings.append(_redis(ops))
        findings.append(_broker(app))
        reachable: set[str] = set()
        for name in sorted(settings.clusters):
            finding = _cluster(ops, name)
            findings.append(finding)
            if not finding.failed:
                reachable.add(name)
        findings.extend(_topics(ops, reachable))
        findings.extend(_pipelines(ops))
    finally:
        ops.close()
    return findings


def _redis(ops: Ops) -> Finding:
    url = mask_url(ops.settings.redis.url)
    try:
        info = ops.redis().info("server")
    except redis.AuthenticationError as exc:
        return Finding(f"redis {url}", "fail", f"authentication failed: {exc}", "redis")
    except (redis.RedisError, RecoverableError, OSError) as exc:
        return Finding(f"redis {url}", "fail", f"unreachable: {_reason(exc)}", "redis")
    return Finding(f"redis {url}", "ok", f"Redis {info.get('redis_version', '?')}")


def _broker(app: Any) -> Finding:
    conn = app.connection_for_write()
    configured = app.conf.broker_url
    url = mask_url(configured) if isinstance(configured, str) else conn.as_uri()
    try:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=5)
    except Exception as exc:  # noqa: BLE001 - kombu raises transport-specific errors
        return Finding(f"celery broker {url}", "fail", f"unreachable: {_reason(exc)}", "broker")
    finally:
        conn.release()
    return Finding(f"celery broker {url}", "ok", "connected")


def _cluster(ops: Ops, name: str) -> Finding:
    conf = ops.settings.cluster(name)
    servers = ",".join(conf.bootstrap_servers)
    options = mask_options(conf.client)
    shown = " ".join(f"{k}={v}" for k, v in sorted(options.items()))
    what = f"cluster {name} {servers}"
    try:
        topics = ops.connections.admin(name).list_topics()
    except (KafkaError, RecoverableError, OSError) as exc:
        reason, hint = _kafka_reason(exc)
        return Finding(what, "fail", reason, hint)
    protocol = options.get("security_protocol", "PLAINTEXT")
    return Finding(
        what, "ok", f"{protocol}, {len(topics)} topics" + (f" ({shown})" if shown else "")
    )


def _topics(ops: Ops, reachable: Iterable[str]) -> list[Finding]:
    out: list[Finding] = []
    clusters = set(reachable)
    for needed in needed_topics(ops.settings):
        what = f"topic {needed.cluster}/{needed.topic}"
        if needed.cluster not in clusters:
            out.append(Finding(what, "warn", f"not checked: cluster unreachable ({needed.why})"))
            continue
        found = ops.connections.consumer(needed.cluster).partitions_for_topic(needed.topic)
        if not found:
            detail = f"missing ({needed.why}); create it with `workers topics create`"
            out.append(Finding(what, "fail", detail, "topic missing"))
        else:
            out.append(Finding(what, "ok", f"{len(found)} partitions ({needed.why})"))
    return out


def _pipelines(ops: Ops) -> list[Finding]:
    """Settings that load but cannot work as meant: more consumers than partitions."""
    out: list[Finding] = []
    for name, p in sorted(ops.settings.pipelines.items()):
        if p.mode != "long_lived":
            continue
        try:
            count = len(ops.connections.consumer(p.cluster).partitions_for_topic(p.topic) or ())
        except (KafkaError, RecoverableError):
            continue
        if count and p.concurrency > count:
            detail = f"concurrency {p.concurrency} > {count} partitions: consumers will idle"
            out.append(Finding(f"pipeline {name}", "warn", detail))
    return out


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _root(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def _reason(exc: BaseException) -> str:
    """The innermost cause's message, on one line."""
    root = _root(exc)
    return " ".join((str(root) or type(root).__name__).split())


def _kafka_reason(exc: BaseException) -> tuple[str, str]:
    """A reason and a troubleshooting entry for a cluster that could not be reached."""
    root = _root(exc)
    name = type(root).__name__
    text = _reason(exc)
    if "Authentication" in name or "Sasl" in name or "authentication" in text.lower():
        return f"authentication failed: {text}", "authentication"
    if "SSL" in name or "ssl" in text.lower() or "certificate" in text.lower():
        return f"TLS failed: {text}", "authentication"
    if "bootstrap" in text.lower() or isinstance(root, OSError):
        return (
            f"cannot reach any bootstrap server: {text} (network, listeners, or a SASL/TLS "
            "handshake failing: `workers -v check` shows the client's errors)"
        ), "cluster down"
    return f"{name}: {text}", "cluster down"
