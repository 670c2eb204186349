"""The demo's closing summary: counts from every side of the pipeline, and the checks that
they reconcile."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from workers.alarms.state import AlertStore
from workers.demo import OUTPUT, events
from workers.demo.progress import Snapshot
from workers.ops.context import Ops
from workers.ops.dlq import read_letters, read_records
from workers.state.keys import alarm_key


@dataclass
class Summary:
    """``made``: records the stream made, by kind (``events.EVENT`` ...), confirmed by the
    broker; ``checks``: (description, holds)."""

    made: Counter[str]
    snap: Snapshot
    letters: int
    alerts_in_redis: int
    alerts_published: int
    open_alerts: int
    changes: int
    checks: list[tuple[str, bool]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(holds for _, holds in self.checks)

    def lines(self) -> list[str]:
        m, s, a = self.made, self.snap, self.snap.alarms
        produced = sum(m.values())
        malformed = sum(m[k] for k in events.MALFORMED)
        out = [
            "summary",
            f"  produced        {produced:>9,}  records ({m[events.EVENT]:,} events, "
            f"{m[events.DUPLICATE]:,} duplicates, {malformed:,} malformed on purpose)",
            f"  pulled          {s.pulled:>9,}  in {s.pull.get('batches', 0):,} batches",
            f"  delivered       {s.built:>9,}  events built into alerts "
            f"(opened {a.get('opened', 0):,}, updated {a.get('updated', 0):,}, "
            f"recovered {a.get('recovered', 0):,}, closed {a.get('closed', 0):,}, "
            f"duplicate {a.get('duplicate', 0):,}, stale {a.get('stale', 0):,}, "
            f"ignored {a.get('ignored', 0):,})",
            f"  dead-lettered   {self.letters:>9,}  ({s.pull.get('dead_lettered', 0):,} at "
            f"the pull, {a.get('invalid', 0):,} invalid events)",
            f"  alerts          {self.alerts_in_redis:>9,}  in Redis ({self.open_alerts:,} "
            f"abnormal or recovered, {a.get('quiet_closed', 0):,} closed when quiet); "
            f"{self.changes:,} changes published",
        ]  # fmt: skip
        out.append("checks")
        out.extend(f"  {'ok ' if holds else 'FAIL'} {text}" for text, holds in self.checks)
        return out


def summarize(ops: Ops, made: Counter[str], snap: Snapshot) -> Summary:
    pipeline = ops.pipeline("alarms")
    letters = read_letters(ops, pipeline)
    changes = [json.loads(r.value) for r in read_records(ops, pipeline.cluster, OUTPUT)]
    client = ops.redis()
    prefix = ops.settings.redis.key_prefix
    store = AlertStore(client, prefix, 3600)
    alerts: dict[str, dict[str, Any]] = {}
    for key in client.scan_iter(match=alarm_key(prefix, "alert", "*"), count=1000):
        fingerprint = key.decode().split("{", 1)[1].split("}", 1)[0]
        alert = store.get(fingerprint)
        if alert is not None:
            alerts[fingerprint] = alert
    latest: dict[str, int] = {}  # alert id -> highest version published
    fingerprints = set()
    for change in changes:
        alert = change["alert"]
        fingerprints.add(alert["fingerprint"])
        latest[alert["id"]] = max(latest.get(alert["id"], 0), int(alert["version"]))
    summary = Summary(
        made, snap, len(letters), len(alerts), len(fingerprints),
        sum(1 for x in alerts.values() if x["status"] != "CLOSED"), len(changes),
    )  # fmt: skip
    produced = sum(made.values())
    malformed = sum(made[k] for k in events.MALFORMED)
    pull_dead = snap.pull.get("dead_lettered", 0)
    invalid = snap.alarms.get("invalid", 0)
    summary.checks = [
        (f"produced = pulled: {produced:,} = {snap.pulled:,}", produced == snap.pulled),
        (f"produced = delivered + dead-lettered: {produced:,} = {snap.built:,} + "
         f"{len(letters):,}", produced == snap.built + len(letters)),
        (f"dead letters = malformed records made: {len(letters):,} = {malformed:,} "
         f"({pull_dead:,} + {invalid:,})",
         len(letters) == malformed == pull_dead + invalid),
        (f"duplicates recognised: {snap.alarms.get('duplicate', 0):,} = "
         f"{made[events.DUPLICATE]:,}", snap.alarms.get("duplicate", 0) == made[events.DUPLICATE]),
        (f"alerts in Redis = alerts published: {len(alerts):,} = {len(fingerprints):,}",
         set(alerts) == fingerprints),
        ("every alert's last published version is its version in Redis",
         all(latest.get(a["id"]) == a["version"] for a in alerts.values())),
        (f"changes published once each: {len(changes):,} = {snap.alarms.get('published', 0):,}",
         len(changes) == snap.alarms.get("published", 0)
         and len({c["change_id"] for c in changes}) == len(changes)),
    ]  # fmt: skip
    return summary
