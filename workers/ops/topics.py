"""The topics a configuration needs, and creating them."""

from __future__ import annotations

from dataclasses import dataclass

from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from workers.config import Settings
from workers.ops.context import Ops

PUBLISH_TASK = "workers.alarms.publish"


@dataclass(frozen=True, slots=True)
class NeededTopic:
    """A topic on a cluster and why the configuration needs it."""

    cluster: str
    topic: str
    why: str


def needed_topics(settings: Settings) -> list[NeededTopic]:
    """Every pipeline's topic and dead-letter topic, and the alarm output topic of pipelines
    that chain ``workers.alarms.publish``; one entry per (cluster, topic), reasons joined."""
    found: dict[tuple[str, str], list[str]] = {}
    for name, p in sorted(settings.pipelines.items()):
        found.setdefault((p.cluster, p.topic), []).append(f"pipeline {name} reads it")
        found.setdefault((p.cluster, p.dead_letter_topic), []).append(f"dead letters of {name}")
        if PUBLISH_TASK in p.tasks:
            cluster = settings.alarms.output_cluster or p.cluster
            found.setdefault((cluster, settings.alarms.output_topic), []).append(
                f"alert changes of {name}"
            )
    return [NeededTopic(c, t, "; ".join(why)) for (c, t), why in found.items()]


@dataclass(frozen=True, slots=True)
class Created:
    """What ``create_topics`` did with one topic: ``created``, ``exists``, ``would create``
    (a dry run) or ``failed`` (``detail`` says why); ``why`` the configuration needs it."""

    cluster: str
    topic: str
    status: str
    detail: str = ""
    why: str = ""


def create_topics(
    ops: Ops, partitions: int, replication_factor: int, dry_run: bool = False
) -> list[Created]:
    """Create the needed topics that do not exist; existing ones are left as they are."""
    out: list[Created] = []
    by_cluster: dict[str, list[NeededTopic]] = {}
    for needed in needed_topics(ops.settings):
        by_cluster.setdefault(needed.cluster, []).append(needed)
    for cluster, topics in sorted(by_cluster.items()):
        admin = ops.connections.admin(cluster)
        existing = set(admin.list_topics())
        for needed in topics:
            topic, why = needed.topic, needed.why
            if topic in existing:
                out.append(Created(cluster, topic, "exists", why=why))
                continue
            if dry_run:
                out.append(Created(cluster, topic, "would create", why=why))
                continue
            new = NewTopic(topic, partitions, replication_factor)
            try:
                admin.create_topics([new])
            except TopicAlreadyExistsError:  # created meanwhile by someone else
                out.append(Created(cluster, topic, "exists", why=why))
            except KafkaError as exc:
                out.append(Created(cluster, topic, "failed", f"{exc}", why))
            else:
                detail = f"{partitions} partitions, replication factor {replication_factor}"
                out.append(Created(cluster, topic, "created", detail, why))
    return out
