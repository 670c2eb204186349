"""The helpers of ``workers.kafka.queue``: which cluster the origin's ``kfk_conf`` names, how
``put`` checks and sends values, how ``take`` reads, and where ``reset_offset`` goes.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kafka.errors import KafkaError, KafkaTimeoutError, OffsetOutOfRangeError

from workers.config import ClusterConfig, Settings
from workers.exceptions import ConfigError, RecoverableError
from workers.kafka.consumer import Consumer
from workers.pulling.positions import Positioner, out_of_range, seek
from workers.state.keys import Space
from workers.state.leases import Lease, Leases, Owner, RedisLeases
from workers.state.local import MemoryLeases, MemoryOffsetStore, MemoryState
from workers.state.offsets import Checkpoint, OffsetStore, Position, RedisOffsetStore

logger = logging.getLogger(__name__)

MARGIN = 5.0  # seconds put() waits past the producer's delivery_timeout_ms
TAIL = 5  # reset_offset(): the origin's "skip to near the tail"
OWNER_TASK = "KafkaQueue"  # how a queue's leases show their holder to operators
_KFK_KEYS = ("cluster", "domain", "port", "cluster_index")


def resolve_cluster(settings: Settings, kfk_conf: Mapping[str, Any] | None) -> str:
    """The name of the configured cluster that ``kfk_conf`` means.

    ``None`` means ``common``; ``{"cluster": name}`` names a cluster; the origin's
    ``{"domain": host, "port": port}`` (``cluster_index`` is ignored) means the first cluster,
    in configuration order, whose ``bootstrap_servers`` list ``host:port`` (port 9092 when
    missing). Raises ``ConfigError`` naming ``kfk_conf`` and listing the configured clusters
    with their servers when nothing matches: security options live in the configuration, so
    an ad-hoc cluster is refused.
    """
    name: Any = None
    if kfk_conf is None:
        name = "common"
    elif isinstance(kfk_conf, Mapping) and "cluster" in kfk_conf:
        name = kfk_conf["cluster"]
    elif isinstance(kfk_conf, Mapping) and "domain" in kfk_conf:
        wanted = _server(kfk_conf["domain"], kfk_conf.get("port", 9092))
        found = [c.name for c in settings.clusters.values() if wanted in _servers(c)]
        name = found[0] if found else None
    if isinstance(name, str) and name in settings.clusters:
        return name
    known = "; ".join(
        f"{c.name} ({', '.join(c.bootstrap_servers)})" for c in settings.clusters.values()
    )
    raise ConfigError(
        "kfk_conf",
        _shown(kfk_conf),
        "{'cluster': name} or {'domain': host, 'port': port} of a configured cluster "
        f"(workers_kafka_clusters: {known}); ad-hoc clusters are refused because their "
        "security options belong in the configuration",
    )


def _servers(cluster: ClusterConfig) -> set[str]:
    return {server.lower() for server in cluster.bootstrap_servers}


def _server(domain: Any, port: Any) -> str:
    host = str(domain).strip().lower()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6, written as the configuration writes it
    return f"{host}:{str(port).strip()}"


def _shown(kfk_conf: Any) -> Any:
    """``kfk_conf`` as it may appear in an error: values of unknown keys masked."""
    if not isinstance(kfk_conf, Mapping):
        return kfk_conf
    return {k: (v if k in _KFK_KEYS else "***") for k, v in kfk_conf.items()}


def encode_values(value: object) -> list[bytes]:
    """``bytes``, ``str`` (encoded UTF-8) or a list or tuple of them, as a list of bytes.

    Raises ``TypeError`` naming the type of anything else; it is raised before anything is
    sent, so a bad item never leaves half a list sent.
    """
    many = isinstance(value, list | tuple)
    items: Sequence[object] = value if isinstance(value, list | tuple) else [value]
    out: list[bytes] = []
    for i, item in enumerate(items):
        if isinstance(item, bytes):
            out.append(item)
        elif isinstance(item, str):
            out.append(item.encode("utf-8"))
        else:
            where = f"item {i} of the {type(value).__name__}" if many else "the value"
            raise TypeError(
                f"put() takes bytes, str or a list of them; {where} is {type(item).__name__}"
            )
    return out


def send_all(
    client: Any,
    topic: str,
    values: Sequence[bytes],
    *,
    key: bytes | None = None,
    partition: int | None = None,
) -> int:
    """Send ``values`` on the producer ``client`` and wait until each is confirmed or failed.

    Nothing is re-sent here: kafka-python retries every batch itself until its
    ``delivery_timeout_ms``, and with the idempotent producer (its default) a retried batch
    is written once. A re-send by hand would put a record into a new batch, outside that
    window, and could write it twice. So the wait is the client's own bound: every future is
    done by ``delivery_timeout_ms`` (plus ``MARGIN``). Returns the number confirmed. Raises
    ``RecoverableError`` saying how many of how many were not confirmed and why: refused
    before sending (e.g. a record over ``max_request_size``), failed after the client's
    retries, or with no topic metadata within ``max_block_ms``.
    """
    futures: list[Any] = []
    refused: list[BaseException] = []
    for index, value in enumerate(values):
        try:
            futures.append(client.send(topic, value=value, key=key, partition=partition))
        except KafkaTimeoutError as exc:  # no metadata: every other record would wait as long
            _flush(client, 0.0)
            done = sum(1 for f in futures if f.is_done and f.succeeded())
            raise RecoverableError(
                f"put to {topic!r}: {len(values) - done} of {len(values)} records not sent "
                f"(no metadata for the topic when sending record {index}): {exc!r}"
            ) from exc
        except KafkaError as exc:  # refused before sending, e.g. a record too large
            refused.append(exc)
    _flush(client, delivery_timeout(client) + MARGIN)
    failed = [f.exception for f in futures if f.is_done and f.failed()]
    unconfirmed = sum(1 for f in futures if not f.is_done)
    sent = len(futures) - len(failed) - unconfirmed
    if sent == len(values):
        return sent
    errors = refused + failed
    raise RecoverableError(
        f"put to {topic!r}: {len(values) - sent} of {len(values)} records not sent "
        f"({len(refused)} refused before sending, {len(failed)} failed after the client's "
        f"retries, {unconfirmed} unconfirmed after its delivery timeout); first error: "
        f"{(errors[0] if errors else None)!r}"
    )


def delivery_timeout(client: Any) -> float:
    """Seconds by which the producer ``client`` has completed every send (confirmed or failed)."""
    config = getattr(client, "config", None) or {}
    return float(config.get("delivery_timeout_ms", 120_000)) / 1000


def _flush(client: Any, timeout: float) -> None:
    with contextlib.suppress(KafkaTimeoutError):  # what is not done is counted unconfirmed
        client.flush(timeout=timeout)


def reset_targets(
    space: Space,
    bounds: Mapping[int, tuple[int, int]],
    stored: Mapping[int, int | None],
    force_offset: int,
) -> dict[int, int]:
    """Where ``reset_offset(force_offset)`` moves each partition of ``bounds`` (log start, log
    end): ``force_offset`` when >= 0, else ``max(stored or log start, log end - TAIL)``; either
    clamped into [log start, log end], with a warning naming the partition."""
    targets: dict[int, int] = {}
    for p, (start, end) in sorted(bounds.items()):
        current = stored.get(p)
        want = force_offset if force_offset >= 0 else max(
            start if current is None else current, end - TAIL
        )  # fmt: skip
        targets[p] = min(max(want, start), end)
        if targets[p] != want:
            logger.warning(
                "%s partition %d: offset %d is outside the log [%d, %d]; reset to %d",
                space, p, want, start, end, targets[p],
            )  # fmt: skip
    return targets


def coordination(
    client: Any, memory: MemoryState | None, settings: Settings, ttl: float, token: str
) -> tuple[OffsetStore, Leases]:
    """The offset store and the leases of owner ``token``: in ``memory`` when given (this
    process only), else on the Redis ``client``."""
    owner = Owner.current(OWNER_TASK)
    if memory is not None:
        return MemoryOffsetStore(memory), MemoryLeases(memory, owner, ttl, token=token)
    store = RedisOffsetStore(client, ttl=settings.redis.offset_ttl_seconds)
    return store, RedisLeases(client, owner, ttl, token=token)


def read(
    consumer: Consumer,
    positioner: Positioner,
    leases: Sequence[Lease],
    positions: Mapping[int, Position],
    count: int,
    deadline: float,
    margin: float,
) -> tuple[list[Any], list[Checkpoint]]:
    """Read up to ``count`` records of the partitions in ``positions`` (all leased) until the
    monotonic ``deadline`` or the earliest lease deadline less ``margin``, whichever comes
    first (at least one poll). Returns the records, by partition then offset, and the
    checkpoints that commit them (fenced by the leases and the generations read).

    The consumer is (re)assigned when its assignment differs (another user of this thread's
    consumer may have changed it) and sought where its position is not the stored one. A
    position the broker reports outside the log is moved by the ``earliest`` policy.
    """
    topic = positioner.space.topic
    held = {lease.partition: lease for lease in leases if lease.partition in positions}
    end = min(deadline, min(lease.deadline for lease in held.values()) - margin)
    base = {p: pos.offset for p, pos in positions.items() if pos.offset is not None}
    seek(consumer, topic, base)
    cursor = dict(base)
    out: list[Any] = []
    first = True
    while len(out) < count and (first or time.monotonic() < end):
        first = False
        wait_ms = max(0, int((end - time.monotonic()) * 1000))
        try:
            polled = consumer.poll(timeout_ms=wait_ms, max_records=count - len(out))
        except OffsetOutOfRangeError as exc:
            found = out_of_range(exc)
            if not found:
                raise
            for tp in (tp for tp in found if tp.partition in held):
                position = Position(cursor[tp.partition], positions[tp.partition].generation)
                fixed = positioner.on_out_of_range(held[tp.partition], position)
                assert fixed.offset is not None
                consumer.seek(tp, fixed.offset)
                cursor[tp.partition] = base[tp.partition] = fixed.offset
            continue
        for records in polled.values():
            for record in records:
                p = record.partition
                if record.topic != topic or p not in cursor or record.offset < cursor[p]:
                    continue  # fetched before a seek, or not ours
                out.append(record)
                cursor[p] = record.offset + 1
    out.sort(key=lambda record: (record.partition, record.offset))
    checkpoints = [
        Checkpoint(p, cursor[p], held[p].epoch, positions[p].generation)
        for p in sorted(cursor)
        if cursor[p] != base[p]
    ]
    return out, checkpoints


def unassign(consumer: Consumer, topic: str) -> None:
    """Forget the consumer's assignment if it is still ``topic``'s (another queue of the
    thread may have re-assigned it since)."""
    try:
        assigned = consumer.assignment()
        if assigned and all(tp.topic == topic for tp in assigned):
            consumer.assign([])  # kafka-python: the same as unsubscribe()
    except (KafkaError, RuntimeError) as exc:  # RuntimeError: the cache closed it meanwhile
        logger.debug("forgetting the assignment of %r failed: %r", topic, exc)
