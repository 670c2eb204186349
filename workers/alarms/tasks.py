"""The stages of the reference alarm pipeline, as Celery tasks chained by the pipeline config.

``workers.alarms.parse`` (messages → events) → ``workers.alarms.build`` (events → alert
changes) → ``workers.alarms.publish`` (changes → the output topic). Each takes a list of JSON
dicts and returns one. ``workers.alarms.sweep`` (Beat) closes alerts that went quiet.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from celery import Task, shared_task
from kafka.errors import KafkaError

from workers.alarms.events import InvalidEvent, parse_event
from workers.alarms.stage import dead_letter
from workers.alarms.state import AlertStore
from workers.connections import connections_for
from workers.exceptions import RecoverableError
from workers.tasks import RETRY as TASK_RETRY

logger = logging.getLogger(__name__)

RETRY: dict[str, Any] = {**TASK_RETRY, "max_retries": 8}


def store_for(app: Any) -> AlertStore:
    connections = connections_for(app)
    settings = connections.settings
    return AlertStore(
        connections.redis(), settings.redis.key_prefix, settings.alarms.dedupe_ttl_seconds
    )


@shared_task(name="workers.alarms.parse", bind=True, **RETRY)
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


@shared_task(name="workers.alarms.build", bind=True, **RETRY)
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


@shared_task(name="workers.alarms.publish", bind=True, **RETRY)
def publish(self: Task, changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Send alert changes to the output topic, keyed by fingerprint (one alert's changes stay
    in order), and wait until the broker confirmed all of them."""
    store = store_for(self.app)
    unique = list({c["change_id"]: c for c in changes}.values())  # a record twice in a batch
    fresh = store.unpublished(unique)
    send_changes(self.app, fresh)
    if fresh:
        store.mark_published(fresh)
        store.count([], {"published": len(fresh)})
    return changes


@shared_task(name="workers.alarms.sweep", bind=True, **RETRY)
def sweep(self: Task) -> dict[str, Any]:
    """Close alerts with no event for ``workers_alarm_quiet_seconds`` and publish the closes."""
    settings = connections_for(self.app).settings
    now_ms = int(time.time() * 1000)
    cutoff = now_ms - int(settings.alarms.quiet_seconds * 1000)
    store = store_for(self.app)
    closed = store.close_quiet(cutoff)
    changes = store.unpublished([_change("closed", a, a.get("cluster")) for a in closed])
    send_changes(self.app, changes)
    if changes:
        store.mark_published(changes)
        store.count([], {"quiet_closed": len(changes), "published": len(changes)})
    store.forget_closed(closed, cutoff)  # only now: a failed send is retried by the next sweep
    return {"closed": len(changes)}


def _change(outcome: str, alert: dict[str, Any], cluster: str | None) -> dict[str, Any]:
    if cluster is not None:
        alert["cluster"] = cluster
    return {"change": outcome, "change_id": f"{alert['id']}:{alert['version']}", "alert": alert}


def send_changes(app: Any, changes: Sequence[dict[str, Any]]) -> None:
    """Produce changes to the output topic on the shared producer; raise ``RecoverableError``
    unless every one was confirmed (the task then retries; receivers dedupe by
    ``change_id``)."""
    if not changes:
        return
    connections = connections_for(app)
    settings = connections.settings
    by_cluster: dict[str, list[dict[str, Any]]] = {}
    for change in changes:
        cluster = settings.alarms.output_cluster or change["alert"].get("cluster")
        if cluster is None:
            cluster = next(iter(settings.clusters))
        by_cluster.setdefault(cluster, []).append(change)
    for cluster, group in by_cluster.items():
        _send(connections, cluster, settings.alarms.output_topic, group)


def _send(connections: Any, cluster: str, topic: str, changes: Iterable[dict[str, Any]]) -> None:
    try:
        producer = connections.producer(cluster)
        futures = [
            producer.send(
                topic,
                value=json.dumps(change, separators=(",", ":")).encode(),
                key=change["alert"]["fingerprint"].encode(),
            )
            for change in changes
        ]
        producer.flush(timeout=connections.settings.cluster(cluster).timeout * 5)
    except KafkaError as exc:
        raise RecoverableError(f"alert changes to {topic!r} not sent: {exc!r}") from exc
    failed = [f for f in futures if not f.succeeded()]
    if failed:
        raise RecoverableError(
            f"{len(failed)} of {len(futures)} alert changes to {topic!r} failed: "
            f"{failed[0].exception!r}"
        )
