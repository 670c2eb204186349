"""Topics and records for the benchmark: create a topic, fill it, read what arrived."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer

from bench.events import HOSTS


def delete_topics(bootstrap: str, topics: list[str]) -> None:
    """Best effort: a broker that keeps them only costs memory until the run ends."""
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
        try:
            admin.delete_topics(topics)
        finally:
            admin.close()
    except Exception:  # noqa: BLE001 - cleanup
        pass


def producer(bootstrap: str, **options: Any) -> KafkaProducer:
    conf: dict[str, Any] = {"linger_ms": 5, "acks": 1}
    conf.update(options)
    return KafkaProducer(bootstrap_servers=bootstrap, **conf)


class Tracker:
    """Counts confirmed sends and the next offset per partition, without keeping futures."""

    def __init__(self) -> None:
        self.ends: dict[int, int] = {}
        self.sent = 0
        self.errors: list[BaseException] = []

    def ok(self, meta: Any) -> None:
        self.sent += 1
        if meta.offset + 1 > self.ends.get(meta.partition, 0):
            self.ends[meta.partition] = meta.offset + 1

    def failed(self, exc: BaseException) -> None:
        self.errors.append(exc)


def fill(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes]], partitions: int
) -> dict[int, int]:
    """Send ``(key, value)`` records, spread by key (one host's events stay on one partition).
    Returns the next offset per partition, as the producer saw it: Tansu's ``end_offsets``
    cannot be trusted (see ../shared/notes/tansu.md)."""
    tracker = Tracker()
    prod = producer(bootstrap)
    try:
        for key, value in records:
            partition = partition_of(key, partitions)
            future = prod.send(topic, value=value, key=key, partition=partition)
            future.add_callback(tracker.ok)
            future.add_errback(tracker.failed)
        prod.flush(timeout=300)
    finally:
        prod.close(timeout=30)
    if tracker.errors:
        raise RuntimeError(f"{len(tracker.errors)} records not sent: {tracker.errors[0]!r}")
    return tracker.ends


_HOST_INDEX = {host.encode(): i for i, (_, host) in enumerate(HOSTS)}


def partition_of(key: bytes, partitions: int) -> int:
    """Hosts spread evenly over the partitions (a hash of 18 names is lumpy)."""
    index = _HOST_INDEX.get(key)
    return (zlib.crc32(key) if index is None else index) % partitions
