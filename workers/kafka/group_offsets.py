"""Offsets committed in Kafka under a pipeline's consumer group, without joining the group: the
seam (``GroupOffsets``) and its kafka-python side. What Kafka's own tools (``kafka-consumer-groups
--describe``, Burrow, Kafka UIs) read as the group's position; Redis stays the truth.

An offset here, as everywhere, is the *next* record to read. Commits carry metadata naming the
writer (``writer``), so a copy written by something else is recognised where the broker keeps it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from kafka import TopicPartition
from kafka.errors import (
    CommitFailedError,
    GroupAuthorizationFailedError,
    IllegalGenerationError,
    KafkaError,
    RebalanceInProgressError,
    TopicAuthorizationFailedError,
    UnknownMemberIdError,
)
from kafka.structs import OffsetAndMetadata

from workers.exceptions import RecoverableError
from workers.state.keys import Space

MARKER = "celery-kafka-workers"


@dataclass(frozen=True, slots=True)
class Committed:
    """One partition's offset in Kafka and the metadata committed with it (None: the broker
    keeps none, or none was given)."""

    offset: int
    metadata: str | None = None


def writer(space: Space, pipeline: str) -> str:
    """The metadata committed with every offset: this package, the key prefix, the pipeline."""
    return f"{MARKER} prefix={space.prefix} pipeline={pipeline}"


def foreign(committed: Committed, space: Space) -> bool:
    """True when the offset carries metadata of another writer than a pipeline of this key
    prefix (another application, or another deployment, using the same group id). Empty
    metadata (a broker that keeps none, Kafka's own tools) is not foreign."""
    meta = committed.metadata
    return bool(meta) and not str(meta).startswith(f"{MARKER} prefix={space.prefix} ")


class GroupOffsets(Protocol):
    """The offsets of one consumer group on one cluster, written and read without membership.
    Implementations: ``KafkaGroupOffsets``; unit tests use a twin. Each call waits at most
    ``timeout`` seconds and raises ``RecoverableError`` when the broker cannot be asked or
    refuses (its message says why)."""

    group: str

    def committed(
        self, topic: str, partitions: Sequence[int], timeout: float
    ) -> dict[int, Committed]:
        """The committed offset of each partition that has one (absent: none committed)."""

    def commit(self, topic: str, offsets: Mapping[int, int], metadata: str, timeout: float) -> None:
        """Commit ``offsets`` (partition -> next offset), each with ``metadata``."""


class KafkaGroupOffsets:
    """``GroupOffsets`` on a kafka-python ``KafkaConsumer`` with the group's id, built by
    ``client()`` (the connection cache's ``group`` client). It never subscribes, so it never
    joins the group: a commit goes out with generation -1, as a simple consumer's, which Kafka
    accepts while the group has no active members. ``discard(error)`` is called after a failure
    (the cache replaces the client, and backs off while the cluster keeps failing)."""

    def __init__(
        self,
        client: Callable[[], Any],
        group: str,
        discard: Callable[[BaseException], None] = lambda error: None,
    ) -> None:
        self.client = client
        self.group = group
        self.discard = discard

    def committed(
        self, topic: str, partitions: Sequence[int], timeout: float
    ) -> dict[int, Committed]:
        deadline = time.monotonic() + timeout
        found: dict[int, Committed] = {}
        with self._boundary(f"read the offsets of group {self.group!r} on {topic!r}"):
            consumer = self.client()
            for p in partitions:  # one OffsetFetch each: committed() is the public call
                left_ms = int((deadline - time.monotonic()) * 1000)
                if left_ms <= 0:
                    raise RecoverableError(
                        f"cannot read the offsets of group {self.group!r} on {topic!r}: no "
                        f"answer within {timeout:g} s"
                    )
                tp = TopicPartition(topic, p)
                one = consumer.committed(tp, metadata=True, timeout_ms=left_ms)
                if one is not None and one.offset is not None and one.offset >= 0:
                    found[p] = Committed(int(one.offset), one.metadata or None)
        return found

    def commit(self, topic: str, offsets: Mapping[int, int], metadata: str, timeout: float) -> None:
        if not offsets:
            return
        wanted = {
            TopicPartition(topic, p): OffsetAndMetadata(offset, metadata, -1)
            for p, offset in sorted(offsets.items())
        }
        with self._boundary(f"commit offsets of group {self.group!r} on {topic!r}"):
            self.client().commit(wanted, timeout_ms=max(1, int(timeout * 1000)))

    @contextmanager
    def _boundary(self, what: str) -> Iterator[None]:
        try:
            yield
        except KafkaError as exc:
            self.discard(exc)
            raise RecoverableError(f"cannot {what}: {exc!r}{_hint(exc, self.group)}") from exc


def _hint(exc: KafkaError, group: str) -> str:
    """What to do about a refusal that waiting will not cure."""
    if isinstance(exc, GroupAuthorizationFailedError | TopicAuthorizationFailedError):
        return (
            f" (the Kafka user needs Read on group {group!r} and on the topic, or set the "
            "pipeline's kafka_commit_seconds to None)"
        )
    members = (CommitFailedError, UnknownMemberIdError, IllegalGenerationError)
    if isinstance(exc, members + (RebalanceInProgressError,)):
        return (
            f" (group {group!r} has active members: another application uses this group id; "
            "give the pipeline a group of its own)"
        )
    return ""
