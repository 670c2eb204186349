"""The stages of the reference alarm pipeline, as Celery tasks chained by the pipeline config.

``workers.alarms.parse`` (messages → events) → ``workers.alarms.build`` (events → alert
changes) → ``workers.alarms.publish`` (changes → the output topic). Each is a ``Stage``: it
takes a list of JSON dicts and returns one, and is idempotent (a batch may run again).
``workers.alarms.sweep`` (Beat) closes alerts that went quiet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from celery import Task, shared_task
from kafka.errors import KafkaError
from kafka.partitioner.default import DefaultPartitioner, murmur2

from workers.alarms.events import InvalidEvent, parse_event
from workers.alarms.state import AlertStore, json_bytes
from workers.connections import connections_for
from workers.exceptions import RecoverableError
from workers.metrics import record
from workers.pulling.tasks import RETRY as TASK_RETRY
from workers.stages.base import stage
from workers.stages.letters import dead_letter

logger = logging.getLogger(__name__)

RETRY: dict[str, Any] = {**TASK_RETRY, "max_retries": 8}
# A batch of 500 events takes well under a second per stage; these bound a stuck one, and the
# ledger's re-drive budget derives from them (2 x 150 s: a lost batch is re-sent after 5 min).
LIMITS: dict[str, Any] = {"soft_time_limit": 40, "time_limit": 50}


def store_for(app: Any) -> AlertStore:
    connections = connections_for(app)
    settings = connections.settings
    return AlertStore(
        connections.redis(),
        settings.redis.key_prefix,
        settings.alarms.dedupe_ttl_seconds,
        replicas=settings.redis.wait_replicas,
        # Less than the socket timeout, so that a missing replica is this error, not a timeout.
        replica_timeout_ms=int(settings.redis.socket_timeout * 500),
    )


@stage(name="workers.alarms.parse", bind=True, **LIMITS)
def parse(self: Task, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validate and normalise each message's value into an event (with its ``record_id`` and
    ``cluster``); an invalid one is dead-lettered with the exact reason and counted."""
    settings = connections_for(self.app).settings
    now_ms = int(time.time() * 1000)
    max_future_ms = int(settings.alarms.max_future_seconds * 1000)
    events: list[dict[str, Any]] = []
    refused: list[tuple[dict[str, Any], str]] = []
    for message in messages:
        try:
            event = parse_event(message.get("value"), now_ms, max_future_ms)
        except InvalidEvent as bad:
            refused.append((message, f"invalid event: {bad.reason}"))
            continue
        event["record_id"] = message["id"]
        event["cluster"] = message["id"].split("/", 1)[0]
        events.append(event)
    if refused:
        dead_letter(self.app, refused)
        store_for(self.app).count([], {"invalid": len(refused)})
    return events


@stage(name="workers.alarms.build", bind=True, **LIMITS)
def build(self: Task, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Apply events to alert state; returns one change per alert state change, in order.
    Events already applied (same record id or event id) change nothing; a record applied by
    an earlier try of this batch emits its change again (``publish`` skips what it sent)."""
    store = store_for(self.app)
    applied = store.apply(events)
    store.count(a.outcome for a in applied)
    clusters = {e["record_id"]: e["cluster"] for e in events}
    changes = []
    for a in applied:
        if a.unpublished_close is not None:
            changes.append(_change("closed", a.unpublished_close, clusters[a.record_id]))
        if a.alert is not None:
            changes.append(_change(a.change, a.alert, clusters[a.record_id]))
    return changes


@stage(name="workers.alarms.publish", bind=True, **LIMITS)
def publish(self: Task, changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Send alert changes to the output topic, keyed by fingerprint (one alert's changes stay
    in order), and wait until the broker confirmed all of them. Each change is claimed before
    it is sent and marked once confirmed: a re-run sends only what was not confirmed, and
    counts as ``resent`` what an earlier, interrupted run may have sent already."""
    store = store_for(self.app)
    unique = list({c["change_id"]: c for c in changes}.values())  # a record twice in a batch
    publish_changes(self.app, store, unique)
    return changes


@shared_task(name="workers.alarms.sweep", bind=True, **RETRY)
def sweep(self: Task) -> dict[str, Any]:
    """Close alerts with no event for ``workers_alarm_quiet_seconds`` and publish the closes."""
    settings = connections_for(self.app).settings
    now_ms = int(time.time() * 1000)
    cutoff = now_ms - int(settings.alarms.quiet_seconds * 1000)
    store = store_for(self.app)
    closed = store.close_quiet(cutoff)
    changes = [_change("closed", a, a.get("cluster")) for a in closed]
    sent = publish_changes(self.app, store, changes)
    if sent:
        store.count([], {"quiet_closed": sent})
    store.forget_closed(closed, cutoff)  # only now: a failed send is retried by the next sweep
    return {"closed": sent}


def _change(outcome: str, alert: dict[str, Any], cluster: str | None) -> dict[str, Any]:
    if cluster is not None:
        alert["cluster"] = cluster
    return {"change": outcome, "change_id": f"{alert['id']}:{alert['version']}", "alert": alert}


def publish_changes(app: Any, store: AlertStore, changes: Sequence[dict[str, Any]]) -> int:
    """Claim, send and mark alert changes (see ``publish``); returns how many were sent now.
    Raises ``RecoverableError`` unless every claimed change was confirmed; the confirmed ones
    are marked first, so a retry sends only the rest."""
    fresh, resent = store.claim(changes)
    confirmed, failure = send_changes(app, fresh)
    if confirmed:
        store.mark_published(confirmed)
    if failure is not None and failure.unsent:  # known not to be on the topic: not claimed
        store.release(failure.unsent)
    again = sum(1 for c in confirmed if c["change_id"] in resent)
    counts = {"published": len(confirmed), "resent": again}
    store.count([], {name: n for name, n in counts.items() if n})
    if failure is not None:
        record.publish_failed(len(fresh) - len(confirmed))
        raise failure
    return len(confirmed)


class SendFailed(RecoverableError):
    """Some alert changes were not confirmed; ``unsent`` were never given to the producer."""

    def __init__(self, message: str, unsent: Sequence[dict[str, Any]] = ()) -> None:
        super().__init__(message)
        self.unsent = list(unsent)


def send_changes(
    app: Any, changes: Sequence[dict[str, Any]]
) -> tuple[list[dict[str, Any]], SendFailed | None]:
    """Produce changes to the output topic on the shared producer and wait for the broker:
    returns the confirmed changes, and the error if any change was not confirmed."""
    if not changes:
        return [], None
    connections = connections_for(app)
    settings = connections.settings
    by_cluster: dict[str, list[dict[str, Any]]] = {}
    for change in changes:
        cluster = settings.alarms.output_cluster or change["alert"].get("cluster")
        if cluster is None:
            cluster = next(iter(settings.clusters))
        by_cluster.setdefault(cluster, []).append(change)
    confirmed: list[dict[str, Any]] = []
    failures: list[SendFailed] = []
    for cluster, group in by_cluster.items():
        done, error = _send(connections, cluster, settings.alarms.output_topic, group)
        confirmed += done
        failures += [error] if error is not None else []
    if not failures:
        return confirmed, None
    unsent = [c for f in failures for c in f.unsent]
    return confirmed, SendFailed(str(failures[0]), unsent)


def _send(
    connections: Any, cluster: str, topic: str, changes: Sequence[dict[str, Any]]
) -> tuple[list[dict[str, Any]], SendFailed | None]:
    """Send one cluster's changes; a send that raises stops the rest (never handed to the
    producer: ``unsent``), and what was sent before it is still waited for."""
    futures: list[Any] = []
    refused: KafkaError | None = None
    try:
        producer = connections.producer(cluster)
        # kafka-python's default partitioner (murmur2 of the key, in pure Python) chooses
        # once per alert of the batch here, as it would; other producers (librdkafka's)
        # choose themselves. An alert's changes go to one partition, in order.
        config = getattr(producer, "config", None) or {}
        default = type(config.get("partitioner")) is DefaultPartitioner
        partitions = sorted(producer.partitions_for(topic)) if default else []
        chosen: dict[bytes, int | None] = {}
        for change in changes:
            key = change["alert"]["fingerprint"].encode()
            partition = chosen.get(key, -1)
            if partition == -1:
                partition = chosen[key] = (
                    partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)] if default else None
                )
            futures.append(
                producer.send(topic, value=json_bytes(change), key=key, partition=partition)
            )
    except KafkaError as exc:
        refused = exc
    if futures:
        try:
            producer.flush(timeout=connections.settings.cluster(cluster).timeout * 5)
        except KafkaError as exc:
            refused = refused or exc
    done = [c for c, f in zip(changes[: len(futures)], futures, strict=True) if f.succeeded()]
    unsent = list(changes[len(futures) :])
    failed = [f for f in futures if not f.succeeded()]
    if refused is not None:
        return done, SendFailed(f"alert changes to {topic!r} not sent: {refused!r}", unsent)
    if failed:
        return done, SendFailed(
            f"{len(failed)} of {len(futures)} alert changes to {topic!r} failed: "
            f"{failed[0].exception!r}"
        )
    return done, None
