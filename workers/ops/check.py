"""``workers check``: settings, Redis, the Celery broker, every cluster, the needed topics,
and each pipeline's offsets in Redis against Kafka's copy.

Each check gives one ``Finding``; a failed one carries a one-line reason and the name of the
README troubleshooting entry that explains it. Nothing secret is ever part of a finding.
Services are probed at once, each in a thread of its own with a deadline, so a service that
accepts connections and never answers fails its check after ``timeout`` instead of hanging it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import redis
from redis.exceptions import RedisClusterException

from workers.config import mask_options, mask_url
from workers.config.masking import clip, mask_text, secrets_in
from workers.exceptions import ConfigError, RecoverableError
from workers.ops.check_topics import Finding as Finding  # re-exported: the findings type
from workers.ops.check_topics import cluster_topics, kafka_copy
from workers.ops.context import Ops
from workers.ops.kafka_probe import ClusterUnusable, list_topics
from workers.ops.redis_probe import describe
from workers.ops.topics import NeededTopic, needed_topics

# A probe's own client timeouts equal the deadline; this lets their errors (more precise
# than "no answer") arrive first.
MARGIN = 1.0


class _Probe:
    """``run()`` in a daemon thread: a probe stuck on a silent socket is abandoned at its
    deadline (and ends when its client's own timeout fires), never waited for."""

    def __init__(self, run: Callable[[], list[Finding]]) -> None:
        self._run, self._done = run, threading.Event()
        self.result: list[Finding] = []
        self.error: BaseException | None = None
        threading.Thread(target=self._main, name="workers-check", daemon=True).start()

    def _main(self) -> None:
        try:
            self.result = self._run()
        except Exception as exc:  # noqa: BLE001 - reported as the check's failure
            self.error = exc
        finally:
            self._done.set()

    def wait(self, deadline: float, failed: Callable[[str], list[Finding]]) -> list[Finding]:
        """The probe's findings, or ``failed(reason)`` when it raised or missed the deadline."""
        if not self._done.wait(max(0.0, deadline - time.monotonic())):
            return failed("")
        if self.error is not None:
            return failed(f"{type(self.error).__name__}: {_reason(self.error)}")
        return self.result


def run_checks(app: Any, timeout: float = 10.0, secrets: Iterable[str] = ()) -> list[Finding]:
    """All checks, in order; stops after the settings when they do not load. Takes about
    ``timeout`` seconds at most per phase (services, topics, Kafka's copies of the offsets),
    whatever the services do.
    ``secrets`` (and those of the configuration) never appear in a finding."""
    try:
        ops = Ops.for_app(app, timeout)  # loads the settings, once
    except ConfigError as exc:
        return [Finding("settings", "fail", str(exc), "settings wrong")]
    hidden = set(secrets) | secrets_in(app.conf, os.environ)
    settings = ops.settings
    pipelines = ", ".join(sorted(settings.pipelines)) or "none"
    count = f"{_count(len(settings.clusters), 'cluster')}; pipelines: {pipelines}"
    findings = [Finding("settings", "ok", count)]
    try:
        services, reachable = _services(ops, app, timeout)
        findings += services + _topics_and_pipelines(ops, reachable, timeout)
        findings += _kafka_copies(ops, reachable, timeout)
    finally:
        ops.close()
    return [_scrubbed(f, hidden) for f in findings]


def _services(ops: Ops, app: Any, timeout: float) -> tuple[list[Finding], set[str]]:
    """Redis, the broker and every cluster, probed at once; and the clusters that answered."""
    redis_what = f"redis {clip(mask_url(ops.settings.redis.url))}"
    broker_what = f"celery broker {_broker_url(app)}"
    probes = [
        (_Probe(lambda: [_redis(ops, redis_what, timeout)]), redis_what, "redis", ""),
        (_Probe(lambda: [_broker(app, broker_what, timeout)]), broker_what, "broker", ""),
    ]
    for name in sorted(ops.settings.clusters):
        probe = _Probe(partial(lambda n: [_cluster(ops, n, timeout)], name))
        probes.append((probe, _cluster_what(ops, name), "cluster down", name))
    deadline = time.monotonic() + timeout + MARGIN
    out: list[Finding] = []
    reachable: set[str] = set()
    for probe, what, hint, cluster in probes:

        def failed(reason: str, what: str = what, hint: str = hint) -> list[Finding]:
            reason = reason or (
                f"no answer within {timeout:g} s: the port accepts connections but nothing "
                "answers (is it the right service?)"
            )
            return [Finding(what, "fail", reason, hint)]

        found = probe.wait(deadline, failed)
        out += found
        if cluster and not any(f.failed for f in found):
            reachable.add(cluster)
    return out, reachable


def _redis(ops: Ops, what: str, timeout: float) -> Finding:
    try:  # a Sentinel's master and a cluster say more (workers.ops.redis_probe)
        level, detail = describe(ops.redis(), ops.settings.redis.wait_replicas)
    except redis.AuthenticationError as exc:
        return Finding(what, "fail", f"authentication failed: {_reason(exc)}", "redis")
    except redis.TimeoutError as exc:
        reason = f"no answer within {timeout:g} s: {_reason(exc)}"
        return Finding(what, "fail", reason, "redis")
    except (redis.RedisError, RedisClusterException, RecoverableError, OSError) as exc:
        return Finding(what, "fail", f"unreachable: {_reason(exc)}", "redis")
    return Finding(what, level, detail, "" if level == "ok" else "redis")


def _broker_url(app: Any) -> str:
    configured = app.conf.broker_url
    if isinstance(configured, list | tuple):
        configured = ";".join(str(url) for url in configured)
    if not configured:  # Celery's default (amqp://guest@localhost//)
        try:
            configured = app.connection_for_write().as_uri(include_password=True)
        except Exception:  # noqa: BLE001 - the broker's own check reports why
            configured = "(Celery's default)"
    return clip(mask_url(str(configured)))


def _broker(app: Any, what: str, timeout: float) -> Finding:
    # Socket timeouts bound a broker that accepts connections and never answers (kombu's
    # Redis transport would otherwise wait forever).
    conn = app.connection_for_write(
        connect_timeout=timeout,
        transport_options={"socket_timeout": timeout, "socket_connect_timeout": timeout},
    )
    try:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - kombu raises transport-specific errors
        reason = _reason(exc)
        silent = isinstance(_root(exc), TimeoutError) or "timeout" in reason.lower()
        prefix = f"no answer within {timeout:g} s" if silent else "unreachable"
        return Finding(what, "fail", f"{prefix}: {reason}", "broker")
    finally:
        conn.release()
    return Finding(what, "ok", "connected")


def _cluster_what(ops: Ops, name: str) -> str:
    return f"cluster {name} {clip(','.join(ops.settings.cluster(name).bootstrap_servers))}"


def _cluster(ops: Ops, name: str, timeout: float) -> Finding:
    """A short-lived client of its own, so that a failure names its cause (authentication,
    TLS, unreachable: ``kafka_probe``) rather than kafka-python's bare bootstrap timeout."""
    what = _cluster_what(ops, name)
    conf = ops.settings.cluster(name)
    options = mask_options(conf.client)
    shown = " ".join(f"{k}={clip(str(v), 80)}" for k, v in sorted(options.items()))
    try:
        topics = list_topics(conf.admin_options(), timeout)
    except ClusterUnusable as exc:
        return Finding(what, "fail", str(exc), exc.hint)
    protocol = options.get("security_protocol", "PLAINTEXT")
    return Finding(
        what, "ok", f"{protocol}, {len(topics)} topics" + (f" ({shown})" if shown else "")
    )


def _topics_and_pipelines(ops: Ops, reachable: set[str], timeout: float) -> list[Finding]:
    """The needed topics, and pipelines with more consumers than partitions; per reachable
    cluster, probed at once."""
    needed = needed_topics(ops.settings)
    probes = {c: _Probe(partial(cluster_topics, ops, c, needed)) for c in sorted(reachable)}
    deadline = time.monotonic() + timeout + MARGIN
    found: dict[str, Finding] = {}
    for cluster, probe in probes.items():

        def failed(reason: str, cluster: str = cluster) -> list[Finding]:
            why = reason or f"no answer from cluster {cluster} within {timeout:g} s"
            return _late(needed, cluster, f"not checked: {why}")

        for f in probe.wait(deadline, failed):
            found[f.what] = f
    out: list[Finding] = []
    for n in needed:
        what = f"topic {n.cluster}/{n.topic}"
        unchecked = Finding(what, "warn", f"not checked: cluster unreachable ({n.why})")
        out.append(found.pop(what, unchecked))
    for name, p in sorted(ops.settings.pipelines.items()):
        what = f"pipeline {name}"
        if p.multi and what not in found:  # its cluster did not answer
            found[what] = Finding(what, "warn", f"not checked: cluster unreachable ({p.source})")
    return out + sorted(found.values(), key=lambda f: f.what)  # the pipelines' findings


def _late(needed: list[NeededTopic], cluster: str, detail: str) -> list[Finding]:
    return [
        Finding(f"topic {n.cluster}/{n.topic}", "fail", detail, "cluster down")
        for n in needed
        if n.cluster == cluster
    ]


def _kafka_copies(ops: Ops, reachable: set[str], timeout: float) -> list[Finding]:
    """Each pipeline's offsets in Redis against Kafka's copy (``kafka_drift``), probed at once;
    one that does not answer in time is a warning, never a failure of the other checks."""
    names = [n for n, p in sorted(ops.settings.pipelines.items()) if p.cluster in reachable]
    probes = {name: _Probe(partial(kafka_copy, ops, name)) for name in names}
    deadline = time.monotonic() + timeout + MARGIN
    out: list[Finding] = []
    for name, probe in probes.items():

        def failed(reason: str, name: str = name) -> list[Finding]:
            why = reason or f"no answer within {timeout:g} s"
            return [Finding(f"kafka copy {name}", "warn", f"not checked: {why}", "kafka copy")]

        out += probe.wait(deadline, failed)
    return out


def _scrubbed(f: Finding, secrets: set[str]) -> Finding:
    return Finding(mask_text(f.what, secrets), f.level, mask_text(f.detail, secrets), f.hint)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _root(exc: BaseException) -> BaseException:
    seen: set[int] = set()
    while exc.__cause__ is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.__cause__
    return exc


def _reason(exc: BaseException) -> str:
    """The innermost cause's message, on one line, capped."""
    root = _root(exc)
    return clip(" ".join((str(root) or type(root).__name__).split()), 300)
