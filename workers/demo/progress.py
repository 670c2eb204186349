"""What the demo shows while it runs: one snapshot of the pipeline per second."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workers.alarms.state import OUTCOMES, AlertStore
from workers.ops.context import Ops
from workers.state import stats


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Counters read from Redis: ``pulled`` is the sum of the stored offsets (records read
    from a topic that started empty), the rest are the pull and alarm counters."""

    pulled: int
    pull: dict[str, int]
    alarms: dict[str, int]

    @property
    def built(self) -> int:
        """Events the build stage applied (every outcome but a Celery redelivery's replay)."""
        return sum(self.alarms.get(o, 0) for o in OUTCOMES if o != "replayed")

    @property
    def dead_letters(self) -> int:
        return self.pull.get("dead_lettered", 0) + self.alarms.get("invalid", 0)

    @property
    def closed(self) -> int:
        return self.alarms.get("closed", 0) + self.alarms.get("quiet_closed", 0)

    def settled(self, produced: int) -> bool:
        """Every produced record read, counted, and through parse and build."""
        delivered = self.pull.get("delivered", 0)
        return (
            self.pulled == produced
            and delivered + self.pull.get("dead_lettered", 0) == produced
            and self.built + self.alarms.get("invalid", 0) == delivered
        )


def snapshot(ops: Ops, pipeline: str = "alarms") -> Snapshot:
    config = ops.pipeline(pipeline)
    space = ops.space(config)
    client = ops.redis()
    parts = ops.partitions(config.cluster, config.topic)
    positions = ops.store().read(space, parts)
    pulled = sum(p.offset or 0 for p in positions.values())
    store = AlertStore(client, ops.settings.redis.key_prefix, 3600)
    return Snapshot(pulled, stats.read(client, space), store.stats())


def line(elapsed: float, duration: float, produced: int, snap: Snapshot) -> str:
    a = snap.alarms
    return (
        f"{elapsed:5.0f}s/{duration:.0f}s  produced {produced:,}  pulled {snap.pulled:,} "
        f"(lag {max(0, produced - snap.pulled):,})  batches {snap.pull.get('batches', 0):,}  |  "
        f"alerts opened {a.get('opened', 0):,} recovered {a.get('recovered', 0):,} "
        f"closed {snap.closed:,}  published {a.get('published', 0):,}  |  "
        f"dead letters {snap.dead_letters:,}"
    )


class Screen:
    """A status line: rewritten in place on a terminal, printed every ``every`` s otherwise."""

    def __init__(self, out: Any, tty: bool, every: float = 5.0) -> None:
        self.out = out
        self.tty = tty
        self.every = every
        self._last = -1e9
        self._open = False

    def status(self, text: str, now: float) -> None:
        if self.tty:
            self.out.write("\r\x1b[2K" + text)
            self.out.flush()
            self._open = True
        elif now - self._last >= self.every:
            self.say(text)
            self._last = now

    def say(self, text: str) -> None:
        if self._open:
            self.out.write("\n")
            self._open = False
        self.out.write(text + "\n")
        self.out.flush()
