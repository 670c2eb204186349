"""The topics a configuration needs, and creating them. A pipeline over many topics needs its
listed topics only as far as they exist (one missing is read once created); a pattern names
no topic to create."""

from __future__ import annotations

from dataclasses import dataclass

from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from workers.config import PipelineConfig, Settings
from workers.ops.context import Ops

PUBLISH_TASK = "workers.alarms.publish"


@dataclass(frozen=True, slots=True)
class NeededTopic:
    """A topic on a cluster and why the configuration needs it; ``optional``: only listed by
    pipelines over many topics, which read it once it exists (missing: a warning)."""

    cluster: str
    topic: str
    why: str
    optional: bool = False


def needed_topics(settings: Settings) -> list[NeededTopic]:
    """Every pipeline's topic (or listed topics) and dead-letter topic, and the alarm output
    topic of pipelines that chain ``workers.alarms.publish``; one entry per (cluster, topic),
    reasons joined. A ``topic_pattern`` names none (``patterns``)."""
    found: dict[tuple[str, str], list[tuple[str, bool]]] = {}

    def need(cluster: str, topic: str, why: str, optional: bool = False) -> None:
        found.setdefault((cluster, topic), []).append((why, optional))

    for name, p in sorted(settings.pipelines.items()):
        if p.topic:
            need(p.cluster, p.topic, f"pipeline {name} reads it")
        for topic in p.topics:
            need(p.cluster, topic, f"pipeline {name} lists it", optional=True)
        need(p.cluster, p.dead_letter_topic, f"dead letters of {name}")
        if PUBLISH_TASK in p.tasks:
            cluster = settings.alarms.output_cluster or p.cluster
            need(cluster, settings.alarms.output_topic, f"alert changes of {name}")
    return [
        NeededTopic(c, t, "; ".join(w for w, _ in why), all(o for _, o in why))
        for (c, t), why in found.items()
    ]


def patterns(settings: Settings) -> list[tuple[str, PipelineConfig]]:
    """The pipelines that read the topics matching a pattern, by name."""
    return [(n, p) for n, p in sorted(settings.pipelines.items()) if p.topic_pattern]


@dataclass(frozen=True, slots=True)
class Created:
    """What ``create_topics`` did with one topic: ``created``, ``exists``, ``would create``
    (a dry run) or ``failed`` (``detail`` says why); ``why`` the configuration needs it. A
    ``topic_pattern`` is ``skipped``, its ``topic`` the pattern: it names no topic to create."""

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
    for name, p in patterns(ops.settings):
        detail = ("a pattern cannot be created: create the topics it should match yourself "
                  "(`workers check` counts those it matches)")  # fmt: skip
        out.append(Created(p.cluster, p.topic_pattern, "skipped", detail,
                           f"topic_pattern of pipeline {name}"))  # fmt: skip
    return out
