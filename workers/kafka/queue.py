"""``KafkaQueue``: the origin's API (``put``, ``take``, ``set_topic``, ``reset_offset``,
``close``) on the package's foundations: per-partition fenced offsets, partition leases and
the process's connection cache. Importing it connects to nothing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from kafka.consumer.fetcher import ConsumerRecord

from workers.config import StartPolicy
from workers.connections import Connections, connections_for
from workers.exceptions import OffsetStoreError, RecoverableError
from workers.kafka import queue_io
from workers.pulling.engine import kafka_boundary
from workers.pulling.positions import Positioner, edges
from workers.state.keys import Space
from workers.state.leases import Lease, Leases
from workers.state.local import MemoryState
from workers.state.offsets import Checkpoint, OffsetStore

logger = logging.getLogger(__name__)


class KafkaQueue:
    """Put records to and take records from one topic of one configured cluster.

    Each instance is one lease owner: ``take`` reads only the partitions it leases (its fair
    share among the live owners of the topic and group), so instances in any process never
    receive the same record. The offsets of the records a take returned are committed, fenced
    by the leases, at the start of the next take, by ``commit()`` or by ``close()``: by then the
    caller has processed them (at least once; a crash re-reads the last take). Keep the time
    between takes below ``lease_ttl``, or the partitions may move to another owner and the
    commit is refused (the records are then read again, never lost).

    ``redis_offset=False`` keeps positions and leases in this instance only: no coordination
    with any other instance or process, and positions are forgotten when it is dropped.
    An instance is meant for one thread at a time; its takes use that thread's consumer.
    """

    def __init__(
        self,
        topic: str = "",
        group_prefix: str = "",
        redis_offset: bool = True,
        kfk_conf: Mapping[str, Any] | None = None,
        timeout: float = 6,
        *,
        app: Any = None,
        connections: Connections | None = None,
        start: str | StartPolicy = "latest",
        lease_ttl: float = 30.0,
    ) -> None:
        """``start``: where a partition with nothing stored begins (``StartPolicy.parse``
        forms); ``timeout``: seconds to confirm each batch of ``put``. Raises ``ConfigError``
        for a ``kfk_conf`` naming no configured cluster, ``ValueError`` for a bad ``start``,
        ``timeout`` or ``lease_ttl`` (seconds, >= 1). Connects to nothing."""
        if connections is None:
            if app is None:
                from workers.app import app  # lazily: importing it reads celeryconfig
            connections = connections_for(app)
        if not timeout > 0 or not lease_ttl >= 1:
            raise ValueError(f"timeout must be > 0 and lease_ttl >= 1; got {timeout}, {lease_ttl}")
        self._connections = connections
        self._settings = connections.settings
        self.cluster = queue_io.resolve_cluster(self._settings, kfk_conf)
        self.topic = topic
        self.group_name = f"{group_prefix}{self._settings.default_group}"
        self.redis_offset = redis_offset
        self.timeout = float(timeout)
        self.start = start if isinstance(start, StartPolicy) else StartPolicy.parse(start)
        self.lease_ttl = float(lease_ttl)
        self._token = uuid.uuid4().hex
        self._memory = None if redis_offset else MemoryState()
        self._seams: tuple[Any, OffsetStore, Leases] | None = None  # (client, store, leases)
        self._held: list[Lease] = []
        self._joined = False  # in the members set of the current space
        self._pending: list[Checkpoint] = []
        self._consumer: tuple[Any, int] | None = None  # (consumer, thread) of the last take
        self._warned_missing = ""

    @classmethod
    def get_alert_kafka_queue(cls, **kwargs: Any) -> KafkaQueue:
        """A queue on the configured ``alert`` cluster (``app``/``connections`` pass through)."""
        return cls(kfk_conf={"cluster": "alert"}, **kwargs)

    @classmethod
    def get_common_kafka_queue(cls, **kwargs: Any) -> KafkaQueue:
        """A queue on the configured ``common`` cluster (``app``/``connections`` pass through)."""
        return cls(kfk_conf={"cluster": "common"}, **kwargs)

    @property
    def reconnect_seconds(self) -> float:
        """The cluster's configured maximum connection age (read-only; the cache reconnects)."""
        return self._settings.cluster(self.cluster).reconnect_seconds

    @property
    def space(self) -> Space:
        """The Redis key space of the current topic and group."""
        return Space(self._settings.redis.key_prefix, self.cluster, self.group_name, self.topic)

    def set_topic(self, topic: str, group_prefix: str = "") -> None:
        """Switch topic and/or group; an empty argument leaves that one unchanged (the origin's
        rule). Before a change, what was taken is committed and the leases are released."""
        new_topic = topic or self.topic
        new_group = f"{group_prefix}{self._settings.default_group}" if group_prefix else None
        new_group = new_group or self.group_name
        if (new_topic, new_group) != (self.topic, self.group_name):
            self.commit()
            self._release()
            self.topic, self.group_name = new_topic, new_group

    def put(
        self,
        value: bytes | str | Sequence[bytes | str],
        topic: str = "",
        *,
        key: bytes | str | None = None,
        partition: int | None = None,
    ) -> int:
        """Send ``value`` (bytes, str encoded UTF-8, or a list of them) to ``topic`` (default:
        this queue's) on the shared producer and wait until every record is confirmed;
        ``key``/``partition`` apply to every record. The client retries by itself (see
        ``queue_io.send_all``), so a put waits at most the producer's ``delivery_timeout_ms``
        (kafka-python's default: 120 s). Returns the number sent. Raises ``TypeError`` for
        another type, ``ValueError`` without a topic and ``RecoverableError`` when records
        were refused or failed after the client's retries."""
        target = self._require_topic(topic)
        values = queue_io.encode_values(value)
        if not values:
            return 0
        key_bytes = key.encode("utf-8") if isinstance(key, str) else key
        return queue_io.send_all(
            self._connections.producer(self.cluster), target, values,
            key=key_bytes, partition=partition,
        )  # fmt: skip

    def take(self, count: int = 1, timeout: float = 0.1) -> list[bytes]:
        """The values of ``take_raw(count, timeout)``."""
        return [record.value for record in self.take_raw(count, timeout)]

    def take_raw(self, count: int = 1, timeout: float = 5.0) -> list[ConsumerRecord]:
        """Up to ``count`` records of the leased partitions, waiting at most ``timeout`` seconds
        (also when no partition could be leased), ordered by partition then offset.

        First commits the previous take. Raises ``ValueError`` without a topic and
        ``RecoverableError`` when Kafka or Redis fails (nothing of this take is committed then,
        so its records are read again)."""
        if count < 1:
            raise ValueError(f"count must be >= 1; got {count}")
        topic = self._require_topic()
        deadline = time.monotonic() + max(0.0, timeout)
        self.commit()
        store, leases = self._coordination()
        space = self.space
        with kafka_boundary(self._connections, self.cluster, f"take from {topic!r}"):
            consumer = self._connections.consumer(self.cluster)
            self._consumer = (consumer, threading.get_ident())
            partitions = consumer.partitions_for_topic(topic)
            if partitions:
                self._held = list(leases.acquire(space, sorted(partitions)).leases)
                self._joined = True
            elif self._warned_missing != topic:
                self._warned_missing = topic
                logger.warning("take: topic %r does not exist on cluster %r", topic, self.cluster)
            positioner = Positioner(store, consumer, space, leases.token, self.start)
            positions = positioner.prepare(self._held) if partitions and self._held else {}
            if not positions:
                time.sleep(max(0.0, deadline - time.monotonic()))
                return []
            # Stop with time to spare: records handed out after a lease ran out are duplicates.
            margin = min(1.0, self.lease_ttl / 10)
            records, self._pending = queue_io.read(
                consumer, positioner, self._held, positions, count, deadline, margin
            )
            return records

    def commit(self) -> dict[int, int]:
        """Store the next offsets after the records of the last take, fenced by the leases it
        was read under. Returns {partition: offset stored}. A refused partition (lease lost, or
        an operator reset since) is logged and dropped: reading continues from the stored
        offset. Raises ``RecoverableError``/``OffsetStoreError`` when Redis fails; the
        checkpoints are then kept for the next take, commit or close."""
        if not self._pending:
            return {}
        store, leases = self._coordination()
        outcomes = store.commit(self.space, leases.token, self._pending)
        self._pending = []
        refused = {p: o.status for p, o in outcomes.items() if not o.ok}
        if refused:
            logger.warning(
                "%s: commit refused %s (lease lost or offsets reset); reading continues from "
                "the stored offsets, so those records may be read again",
                self.space, refused,
            )  # fmt: skip
        return {p: o.stored for p, o in outcomes.items() if o.ok and o.stored is not None}

    def reset_offset(self, force_offset: int = -1) -> dict[int, int]:
        """Move every partition of the topic: to ``force_offset`` when >= 0, else (-1) to
        ``max(stored or log start, log end - 5)``, the origin's "skip to near the tail"; each
        clamped into [log start, log end] (logged when clamped). An operator reset: it bumps
        the partitions' generations, so commits of takes read before it are refused. Returns
        {partition: new offset}. Raises ``ValueError`` for a bad offset or a missing topic."""
        if force_offset < -1:
            raise ValueError(f"force_offset must be >= 0, or -1; got {force_offset}")
        topic = self._require_topic()
        store, _ = self._coordination()
        space = self.space
        with kafka_boundary(self._connections, self.cluster, f"reset offsets of {topic!r}"):
            consumer = self._connections.consumer(self.cluster)
            partitions = sorted(consumer.partitions_for_topic(topic) or ())
            if not partitions:
                raise ValueError(f"topic {topic!r} does not exist on cluster {self.cluster!r}")
            bounds = edges(consumer, topic, partitions)
        stored = {p: pos.offset for p, pos in store.read(space, partitions).items()}
        targets = queue_io.reset_targets(space, bounds, stored, force_offset)
        self._pending = []  # superseded: the store would refuse them anyway
        before = store.reset(space, targets)
        logger.info(
            "%s: offsets reset: %s",
            space, ", ".join(f"{p}: {before[p].offset} -> {o}" for p, o in targets.items()),
        )  # fmt: skip
        return targets

    def close(self, commit: bool = True) -> None:
        """Commit what was taken (unless ``commit`` is False), release the leases and leave the
        owners of the topic, and forget the consumer's assignment. Idempotent; the queue may
        take again afterwards. A failed commit is raised after the rest is done; a failed
        release is only logged (the leases expire after ``lease_ttl``)."""
        try:
            if commit:
                self.commit()
        finally:
            self._pending = []
            self._release()
            last, self._consumer = self._consumer, None
            if last is not None and last[1] == threading.get_ident():  # never another thread's
                queue_io.unassign(last[0], self.topic)

    def __enter__(self) -> KafkaQueue:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        # After an error the last take was probably not processed: do not commit it.
        self.close(commit=exc_type is None)

    def __del__(self) -> None:
        # No network I/O here: leases expire by themselves, and the last take is read again.
        if getattr(self, "_held", None) or getattr(self, "_pending", None):
            with contextlib.suppress(Exception):  # logging may be gone at interpreter exit
                logger.warning(
                    "KafkaQueue for %r dropped without close(): its leases expire after %.0f s "
                    "and its last take will be read again",
                    getattr(self, "topic", "?"), getattr(self, "lease_ttl", 0.0),
                )  # fmt: skip

    def __repr__(self) -> str:
        return (
            f"KafkaQueue(cluster={self.cluster!r}, topic={self.topic!r}, "
            f"group={self.group_name!r}, redis_offset={self.redis_offset!r})"
        )

    def _require_topic(self, topic: str = "") -> str:
        if not (topic or self.topic):
            raise ValueError("KafkaQueue has no topic: pass topic= or call set_topic() first")
        return topic or self.topic

    def _coordination(self) -> tuple[OffsetStore, Leases]:
        """The offset store and leases of this owner; rebuilt (same token) when the cache hands
        out another Redis client, e.g. after a fork."""
        client = self._memory if self._memory is not None else self._connections.redis()
        if self._seams is None or self._seams[0] is not client:
            settings, ttl = self._settings, self.lease_ttl
            store, leases = queue_io.coordination(client, self._memory, settings, ttl, self._token)
            self._seams = (client, store, leases)
        return self._seams[1], self._seams[2]

    def _release(self) -> None:
        held, self._held = self._held, []
        if not held and not self._joined:
            return
        self._joined = False
        try:
            _, leases = self._coordination()
            leases.release(self.space, held, leave=True)
        except (RecoverableError, OffsetStoreError) as exc:
            logger.warning("%s: leases not released (they expire by themselves): %s", self, exc)
