"""Every Redis key name the package uses, built in one function.

Keys of one (cluster, group, topic) share a Redis Cluster hash tag, so one Lua script may
touch all of them (offsets, reset generations, leases, the in-flight ledger, fencing epochs,
members, the dead-letter brake, the record of Kafka's copy of the offsets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal[
    "offsets",
    "generations",
    "lease",
    "ledger",
    "epochs",
    "members",
    "skipped",
    "slot",
    "stats",
    "brake",
    "kafka",
]
# Kinds with one key per partition (lease, ledger) or per consumer slot (slot).
_NUMBERED = ("lease", "ledger", "slot")


def key(prefix: str, kind: Kind, cluster: str, group: str, topic: str, partition: int = -1) -> str:
    """The one key builder. ``partition`` numbers lease and ledger keys (partition) and slot
    keys (slot)."""
    tag = "{" + f"{cluster}/{group}/{topic}" + "}"
    name = f"{prefix}:{kind}:{tag}"
    return f"{name}:{partition}" if kind in _NUMBERED else name


def pipeline_key(prefix: str, cluster: str, group: str, pipeline: str) -> str:
    """The key of what a pipeline of many topics knows about its topics (``workers.state.
    topics``): one per pipeline (two pipelines of one group may read different topics)."""
    return f"{prefix}:topics:{{{cluster}/{group}}}:{pipeline}"


AlarmKind = Literal["alert", "applied", "alerts", "alarm-stats"]


def alarm_key(prefix: str, kind: AlarmKind, fingerprint: str = "", suffix: str = "") -> str:
    """Keys of the reference alarm pipeline. One alert's keys share the hash tag
    ``{fingerprint}`` (its state and its applied-record markers, touched by one Lua script);
    ``alerts`` (the index of open alerts) and ``alarm-stats`` are single keys."""
    if kind in ("alerts", "alarm-stats"):
        return f"{prefix}:{kind}"
    if not fingerprint:
        raise ValueError(f"a {kind} key needs a fingerprint")
    name = f"{prefix}:{kind}:{{{fingerprint}}}"
    return f"{name}:{suffix}" if suffix else name


@dataclass(frozen=True, slots=True)
class Space:
    """The partitions of one topic as read by one consumer group on one cluster."""

    prefix: str
    cluster: str
    group: str
    topic: str

    def key(self, kind: Kind, partition: int = -1) -> str:
        if kind in _NUMBERED and partition < 0:
            raise ValueError(f"a {kind} key needs a number")
        return key(self.prefix, kind, self.cluster, self.group, self.topic, partition)

    def __str__(self) -> str:
        return f"{self.cluster}/{self.group}/{self.topic}"
