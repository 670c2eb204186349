"""How fast a pipeline consumes between two looks (``workers lag --watch``): records per second,
how fast the lag changes, and when it will have caught up at that pace."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workers.ops.fmt import age
from workers.ops.overview import ManyStatus, Status, per_topic


@dataclass(frozen=True, slots=True)
class Sample:
    """One look at a pipeline: when (monotonic seconds), and per partition with a committed
    offset that offset and the lag behind the log end. Partitions are numbers, or (topic,
    number) for a pipeline over many topics."""

    seconds: float
    committed: dict[Any, int] = field(default_factory=dict)
    lags: dict[Any, int] = field(default_factory=dict)

    @classmethod
    def of(cls, status: Status, seconds: float) -> Sample:
        rows = per_topic(status)
        many = isinstance(status, ManyStatus)

        def key(topic: str, partition: int) -> Any:
            return (topic, partition) if many else partition

        committed = {key(t.pipeline.topic, p.partition): p.stored
                     for t in rows for p in t.partitions if p.stored is not None}  # fmt: skip
        lags = {key(t.pipeline.topic, p.partition): p.lag
                for t in rows for p in t.partitions if p.lag is not None}  # fmt: skip
        return cls(seconds, committed, lags)

    @property
    def lag(self) -> int | None:
        return sum(self.lags.values()) if self.lags else None


@dataclass(frozen=True, slots=True)
class Pace:
    """``rate``: records committed per second; ``change``: how the lag moved per second
    (negative: it shrinks); both None before a second look or without a partition committed
    in both. ``lag``: records behind now (None: nothing committed yet)."""

    rate: float | None
    change: float | None
    lag: int | None

    @property
    def catch_up_seconds(self) -> float | None:
        """Lag ÷ how fast it shrinks: 0.0 with no lag; None when unknown or not catching up."""
        if self.lag == 0:
            return 0.0
        if self.lag is None or self.change is None or self.change >= 0:
            return None
        return self.lag / -self.change

    def catch_up_text(self) -> str:
        """``caught up``, ``3m12s``, ``never`` (the lag does not shrink) or ``-`` (unknown)."""
        if self.lag == 0:
            return "caught up"
        if self.lag is None or self.change is None:
            return "-"
        eta = self.catch_up_seconds
        return "never" if eta is None else age(eta)


def pace(before: Sample | None, now: Sample) -> Pace:
    """The pace from ``before`` to ``now``, over the partitions committed in both. A partition
    reset backwards between the two counts as 0 records, not as negative ones."""
    if before is None or now.seconds <= before.seconds:
        return Pace(None, None, now.lag)
    elapsed = now.seconds - before.seconds
    both = sorted(set(before.committed) & set(now.committed))
    lagging = sorted(set(before.lags) & set(now.lags))
    if not both:
        return Pace(None, None, now.lag)
    moved = sum(max(0, now.committed[p] - before.committed[p]) for p in both)
    change = sum(now.lags[p] - before.lags[p] for p in lagging) / elapsed if lagging else None
    return Pace(moved / elapsed, change, now.lag)
