"""The report of a chaos run as a table: one line per count, then the stuck partitions, the
faults injected, the lost records and what explains them, and the targets missed."""

from __future__ import annotations

from collections import Counter

from tests.chaos.report import Report

ROWS = (
    ("records_produced", "records produced (input topic read back)"),
    ("lost_first_stage", "lost: never reached the first stage"),
    ("lost_first_stage_vanished_message", "  of which in a vanished task message"),
    ("lost_state", "lost: valid, never applied to alert state"),
    ("lost_state_vanished_message", "  of which in a vanished task message"),
    ("dead_letters_missing", "lost: invalid, never dead-lettered"),
    ("dead_letters_missing_acked_by_kafka", "  of which the broker's holes explain"),
    ("delivered_more_than_once", "records delivered more than once to the first stage"),
    ("extra_deliveries", "  extra deliveries in all"),
    ("handed_off_again", "  of which handed off again (new task message)"),
    ("alerts_expected", "alerts (fingerprints) expected"),
    ("double_state_changes", "alerts changed twice by the same record"),
    ("alerts_missing", "alerts missing"),
    ("alerts_short", "alerts short of changes (other mismatch)"),
    ("changes_published", "alert changes on the output topic"),
    ("output_duplicates", "changes published twice (extra copies)"),
    ("output_duplicate_bound", "  bound the faults explain"),
    ("changes_never_published", "alert versions never published"),
    ("never_published_vanished_message", "  of which in a vanished publish message"),
    ("never_published_acked_by_kafka", "  of which acknowledged by the Kafka broker, then lost"),
    ("never_published_other", "  of which other (the pipeline's own)"),
    ("changes_published_not_in_state", "changes published but not in final state"),
    ("partitions_stuck", "partitions stuck (stored offset < log end)"),
    ("input_offset_gaps", "offsets missing in the input topic (broker)"),
    ("output_offset_gaps", "offsets missing in the output topic (broker)"),
    ("dead_letter_offset_gaps", "offsets missing in the dead-letter topic (broker)"),
    ("messages_traced", "stage messages seen sent (Redis MONITOR)"),
    ("messages_vanished", "  never received by any worker (vanished)"),
    ("drained", "drained"),
    ("drain_seconds", "time to drain (s)"),
    ("restore_blocked_seconds", "  of which redelivery stalled (dead lock holder)"),
    ("unplanned_exits", "processes that exited unasked (replaced)"),
    ("task_failures", "task failures in worker logs"),
)


def table(report: Report) -> str:
    width = max(len(label) for _, label in ROWS)
    lines = [f"{label:<{width}}  {report.counts.get(key, '-')}" for key, label in ROWS]
    for p, (stored, end) in report.stuck.items():
        lines.append(f"  partition {p}: stored {stored}, log end {end}")
    faults = Counter(
        f["kind"] + (" (skipped)" if str(f.get("detail", "")).startswith("skipped") else "")
        for f in report.faults
    )
    lines.append("faults: " + ", ".join(f"{k} x{n}" for k, n in sorted(faults.items())))
    for key in ("lost_first_stage", "lost_state"):
        if report.samples.get(key):
            lines.append(f"  {key}: {' '.join(report.samples[key][:20])}")
    for line in report.samples.get("never_published_made_by", []):
        lines.append(f"  never published: {line}")
    for line in report.samples.get("messages_vanished", []):
        lines.append(f"  vanished: {line}")
    missed = report.failures()
    lines.append("targets: " + ("all met" if not missed else "MISSED " + ", ".join(missed)))
    return "\n".join(lines)
