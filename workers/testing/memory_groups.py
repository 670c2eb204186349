"""An in-memory twin of Kafka's group offsets (``workers.kafka.group_offsets.GroupOffsets``):
held to the same contract as the real broker (``tests/contracts/group_offsets.py``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from workers.exceptions import RecoverableError
from workers.kafka.group_offsets import Committed


@dataclass
class MemoryGroups:
    """The offsets a cluster keeps: (group, topic, partition) -> ``Committed``.
    ``keeps_metadata`` False stands for a broker that drops commit metadata (as the embedded
    test broker does); ``down`` makes every call fail as an unreachable cluster would."""

    keeps_metadata: bool = True
    down: bool = False
    offsets: dict[tuple[str, str, int], Committed] = field(default_factory=dict)
    commits: int = 0  # commit requests that reached the cluster


class MemoryGroupOffsets:
    """``GroupOffsets`` of one group on ``MemoryGroups``; ``timeouts`` remembers the bound
    each call was given."""

    def __init__(self, groups: MemoryGroups, group: str) -> None:
        self.groups = groups
        self.group = group
        self.timeouts: list[float] = []

    def committed(
        self, topic: str, partitions: Sequence[int], timeout: float
    ) -> dict[int, Committed]:
        self._reach(timeout, f"read the offsets of group {self.group!r}")
        found = {p: self.groups.offsets.get((self.group, topic, p)) for p in partitions}
        return {p: c for p, c in found.items() if c is not None}

    def commit(self, topic: str, offsets: Mapping[int, int], metadata: str, timeout: float) -> None:
        self._reach(timeout, f"commit offsets of group {self.group!r}")
        self.groups.commits += 1
        kept = metadata if self.groups.keeps_metadata else None
        for p, offset in offsets.items():
            self.groups.offsets[(self.group, topic, p)] = Committed(offset, kept)

    def _reach(self, timeout: float, what: str) -> None:
        self.timeouts.append(timeout)
        if self.groups.down:
            raise RecoverableError(f"cannot {what}: KafkaTimeoutError (the cluster is down)")
