"""Where a run's findings came from, added to its report: task messages that vanished in the
Celery broker and what they carried, alert changes the Kafka broker acknowledged and lost, the
record behind each change never published, and holes in the topics' offsets."""

from __future__ import annotations

from collections import Counter

import redis

from tests.chaos.faults import Injected
from tests.chaos.report import SAMPLE, Facts, Report, never_published, ranges
from tests.chaos.trace import Push
from tests.chaos.truth import changed_by, offset_gaps
from workers.state.keys import alarm_key


def explain(report: Report, facts: Facts, client: redis.Redis, prefix: str) -> None:
    by_alert = {a["id"]: fp for fp, a in facts.alerts.items() if a is not None}
    details = []
    for change_id in report.samples.get("changes_never_published", []):
        alert_id, version = change_id.rsplit(":", 1)
        rid = changed_by(client, prefix, by_alert[alert_id]).get(int(version), "?")
        details.append(
            f"{change_id} made by {rid}: reached the first stage "
            f"{facts.observed.seen.get(rid, 0)}x in {facts.observed.messages.get(rid, 0)} "
            "task message(s)"
        )
    report.samples["never_published_made_by"] = details
    topics = (("input", facts.inputs), ("output", facts.outputs),
              ("dead_letter", facts.dead_letters))  # fmt: skip
    for name, records in topics:
        gaps = offset_gaps(records)
        report.counts[f"{name}_offset_gaps"] = sum(len(g) for g in gaps.values())
        report.samples[f"{name}_offset_gaps"] = [f"{p}: {g[:SAMPLE]}" for p, g in gaps.items()]
    # A dead letter is confirmed by the broker before its batch finishes: as many missing
    # letters as the dead-letter topic has holes are the broker's loss (a restarted Tansu
    # loses some acknowledged records: notes/tansu.md).
    c = report.counts
    c["dead_letters_missing_acked_by_kafka"] = min(
        int(c.get("dead_letters_missing", 0)), c["dead_letter_offset_gaps"]
    )


def confirmed(client: redis.Redis, prefix: str, facts: Facts, change_ids: list[str]) -> list[str]:
    """Changes ``publish`` recorded as sent: it does so only once the Kafka broker acknowledged
    every one (alarms/state.py keeps ``p:<change id>`` = 1 per alert)."""
    by_alert = {a["id"]: fp for fp, a in facts.alerts.items() if a is not None}
    pipe = client.pipeline(transaction=False)
    for change_id in change_ids:
        fp = by_alert[change_id.rsplit(":", 1)[0]]
        pipe.get(alarm_key(prefix, "applied", fp, "p:" + change_id))
    return [c for c, mark in zip(change_ids, pipe.execute(), strict=True) if mark == b"1"]


def attribute(
    report: Report, facts: Facts, client: redis.Redis, prefix: str, lost: dict[str, Push]
) -> None:
    """Split the losses by cause: carried by a vanished task message (the Celery broker lost
    it), or acknowledged by the Kafka broker and missing from the topic (the broker lost it);
    what is left is the pipeline's own."""
    c, s = report.counts, report.samples
    carried = {item for push in lost.values() for item in push.items}
    never = never_published(facts)
    by_broker = confirmed(client, prefix, facts, never)
    in_vanished = [cid for cid in never if cid in carried]
    c["never_published_acked_by_kafka"] = len(by_broker)
    s["never_published_acked_by_kafka"] = by_broker[:SAMPLE]
    c["never_published_vanished_message"] = len(in_vanished)
    c["never_published_other"] = len(set(never) - set(by_broker) - set(in_vanished))
    for key in ("lost_first_stage", "lost_state"):
        ids = [rid for rid in report.lost.get(key, []) if rid in carried]
        c[f"{key}_vanished_message"] = len(ids)
        s[f"{key}_vanished_message"] = ranges(ids)


def explain_vanished(
    report: Report, lost: dict[str, Push], traced: int, t0_wall: float, faults: list[Injected]
) -> None:
    """Count vanished messages per stage (of ``traced`` seen sent); describe each with the
    first faults after it was sent (a message may wait in the queue before it is taken)."""
    report.counts["messages_traced"] = traced
    report.counts["messages_vanished"] = len(lost)
    by_task = Counter(push.task for push in lost.values())
    report.samples["messages_vanished_by_stage"] = [f"{t}: {n}" for t, n in by_task.items()]
    lines = []
    for ident, push in sorted(lost.items(), key=lambda item: item[1].wall)[:SAMPLE]:
        at = push.wall - t0_wall
        after = [f"{f.kind} at t={f.at:.2f}s ({f.detail})" for f in faults if f.at >= at][:2]
        lines.append(
            f"{push.task}[{ident}] {push.batch or f'<{len(push.items)} items>'} sent at "
            f"t={at:.2f}s; next faults: " + ("; ".join(after) or "none")
        )
    report.samples["messages_vanished"] = lines
