"""``workers check``'s findings on the topics: each needed topic on a cluster, what a pipeline
over many topics reads now, and each pipeline's offsets in Redis against Kafka's copy."""

from __future__ import annotations

from dataclasses import dataclass

from workers.config import PipelineConfig
from workers.config.masking import clip
from workers.ops.context import Ops
from workers.ops.kafka_drift import check_topic
from workers.ops.pipeline_topics import every_topic
from workers.ops.topics import NeededTopic
from workers.pulling.topics import dead_letter_topics, matching

# Topics of a pipeline over many named in one finding; the rest are counted.
SHOWN_TOPICS = 5


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


def cluster_topics(ops: Ops, cluster: str, needed: list[NeededTopic]) -> list[Finding]:
    consumer = ops.connections.consumer(cluster)
    out: list[Finding] = []
    counts: dict[str, int] = {}
    for n in needed:
        if n.cluster != cluster:
            continue
        what = f"topic {n.cluster}/{n.topic}"
        found = consumer.partitions_for_topic(n.topic)
        counts[n.topic] = len(found or ())
        if not found and n.optional:
            detail = f"missing ({n.why}); read once created (`workers topics create` creates it)"
            out.append(Finding(what, "warn", detail, "topic missing"))
        elif not found:
            detail = f"missing ({n.why}); create it with `workers topics create`"
            out.append(Finding(what, "fail", detail, "topic missing"))
        else:
            out.append(Finding(what, "ok", f"{len(found)} partitions ({n.why})"))
    multi = [(n, p) for n, p in sorted(ops.settings.pipelines.items())
             if p.cluster == cluster and p.multi]  # fmt: skip
    names = consumer.topics() if multi else set()
    for name, p in multi:
        out.append(_many_topics(ops, name, p, names))
    # Settings that load but cannot work as meant: more consumers than partitions.
    for name, p in sorted(ops.settings.pipelines.items()):
        partitions = counts.get(p.topic, 0)
        if p.multi or p.cluster != cluster:
            continue
        if p.mode == "long_lived" and 0 < partitions < p.concurrency:
            detail = f"concurrency {p.concurrency} > {partitions} partitions: consumers will idle"
            out.append(Finding(f"pipeline {name}", "warn", detail))
    return out


def _many_topics(ops: Ops, name: str, p: PipelineConfig, names: set[str]) -> Finding:
    """A pipeline over many topics: how many it reads now (none: a warning naming the pattern
    or the list), and more consumers than their partitions."""
    what = f"pipeline {name}"
    found = matching(p, names, dead_letter_topics(ops.settings))
    if not found:
        if p.topic_pattern:
            detail = (f"no topic on cluster {p.cluster} matches {p.topic_pattern!r}: nothing "
                      "is read until one is created")  # fmt: skip
        else:
            detail = f"none of its listed topics exists on cluster {p.cluster}: nothing is read"
        return Finding(what, "warn", detail, "no topic")
    consumer = ops.connections.consumer(p.cluster)
    partitions = sum(len(consumer.partitions_for_topic(t) or ()) for t in found)
    shown = clip(", ".join(found[:SHOWN_TOPICS]), 300)
    more = f" and {len(found) - SHOWN_TOPICS:,} more" if len(found) > SHOWN_TOPICS else ""
    of = f" of {len(p.topics)} listed" if p.topics else f" matching {p.topic_pattern!r}"
    detail = f"reads {len(found):,} topic(s){of} ({partitions:,} partitions): {shown}{more}"
    if p.mode == "long_lived" and 0 < partitions < p.concurrency:
        return Finding(what, "warn", f"{detail}; concurrency {p.concurrency} > {partitions} "
                                     "partitions: consumers will idle")  # fmt: skip
    return Finding(what, "ok", detail)


def kafka_copy(ops: Ops, name: str) -> list[Finding]:
    """The drift of one pipeline: of its topic, or of each topic of a pipeline over many (one
    finding: the topics with a problem, or, all fine, how many were checked)."""
    pipeline = ops.pipeline(name)
    consumer = ops.connections.consumer(pipeline.cluster)
    results = []
    for topic in every_topic(ops, pipeline):
        found = consumer.partitions_for_topic(topic.topic)
        if found:  # else: the topic's own check says it is missing (or it is gone)
            results.append((topic.topic, *check_topic(ops, topic, sorted(found))))
    if not results:
        return []
    if not pipeline.multi:
        [(_, level, detail)] = results
    else:
        level, detail = _many_copies(pipeline, results)
    return [Finding(f"kafka copy {name}", level, detail, "" if level == "ok" else "kafka copy")]


def _many_copies(pipeline: PipelineConfig, results: list[tuple[str, str, str]]) -> tuple[str, str]:
    """One finding of the (topic, level, detail) of each topic of a pipeline over many."""
    bad = [(t, d) for t, level, d in results if level != "ok"]
    if bad:
        more = f"; and {len(bad) - SHOWN_TOPICS:,} more topic(s)" if len(bad) > SHOWN_TOPICS else ""
        return "warn", "; ".join(f"topic {t}: {d}" for t, d in bad[:SHOWN_TOPICS]) + more
    details = {d for _, _, d in results}
    if len(details) == 1:
        return "ok", f"{len(results):,} topic(s): {details.pop()}"
    return "ok", (f"group {pipeline.group}: {len(results):,} topic(s), each in step, following "
                  "or with nothing stored yet")  # fmt: skip
