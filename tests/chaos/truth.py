"""Ground truth after a run: the topics read back from the broker, and what Redis holds (first
stage observations, record markers of the alert store, alerts, stored offsets)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
from kafka import KafkaConsumer, TopicPartition

from tests.chaos.tasks import seen_key
from workers.alarms.state import AlertStore
from workers.state.keys import alarm_key


@dataclass(frozen=True, slots=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


def read_topic(
    bootstrap: str,
    topic: str,
    ends: Mapping[int, int] | None = None,
    idle: float = 3.0,
    timeout: float = 600.0,
) -> list[Record]:
    """Every record of ``topic`` from the beginning: at least up to ``ends`` (next offsets;
    by default the broker's end offsets, which Tansu reports too low: the first offset of the
    last batch + 1), then until nothing more came for ``idle`` seconds."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=30_000,
        max_partition_fetch_bytes=8 << 20,
    )  # fmt: skip
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        floor = dict(ends) if ends is not None else {
            tp.partition: end for tp, end in consumer.end_offsets(tps).items()
        }  # fmt: skip
        out: list[Record] = []
        reached = {tp.partition: 0 for tp in tps}
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline:
            batches = consumer.poll(timeout_ms=500)
            for r in (r for records in batches.values() for r in records):
                headers = {k: v or b"" for k, v in r.headers or []}
                out.append(Record(r.partition, r.offset, r.key, r.value, headers))
                reached[r.partition] = r.offset + 1
                last = time.monotonic()
            floor_met = all(reached.get(p, 0) >= e for p, e in floor.items())
            if floor_met and time.monotonic() - last >= idle:
                return out
        raise TimeoutError(f"{topic}: read {len(out)} records, not done after {timeout} s")
    finally:
        consumer.close()


@dataclass(frozen=True, slots=True)
class Observed:
    """What reached the first stage: deliveries per record id, and the number of different
    task messages that brought each (more than one: it was handed off again)."""

    seen: dict[str, int]
    messages: dict[str, int]
    deliveries: int


def observed(client: redis.Redis, prefix: str) -> Observed:
    key = seen_key(prefix)
    seen = {k.decode(): int(v) for k, v in client.hgetall(key).items()}
    messages: dict[str, int] = {}
    for field in client.hkeys(key + ":by-task"):
        rid = field.decode().split("|", 1)[0]
        messages[rid] = messages.get(rid, 0) + 1
    return Observed(seen, messages, int(client.get(key + ":deliveries") or 0))


def applied(client: redis.Redis, prefix: str, pairs: Iterable[tuple[str, str]]) -> set[str]:
    """Record ids (of ``(fingerprint, record id)`` pairs) that ``build`` applied: the alert
    store keeps a marker per record it applied (``r:<record id>``, see alarms/state.py)."""
    pairs = list(pairs)
    found: set[str] = set()
    for start in range(0, len(pairs), 5000):
        chunk = pairs[start : start + 5000]
        pipe = client.pipeline(transaction=False)
        for fp, rid in chunk:
            pipe.exists(alarm_key(prefix, "applied", fp, "r:" + rid))
        found.update(rid for (_, rid), hit in zip(chunk, pipe.execute(), strict=True) if hit)
    return found


def alerts(client: redis.Redis, prefix: str, fingerprints: Iterable[str]) -> dict[str, Any]:
    """Fingerprint → the alert as the store returns it (None if there is none)."""
    store = AlertStore(client, prefix, 86_400)
    return {fp: store.get(fp) for fp in fingerprints}


def settled_client(url: str, timeout: float = 30.0) -> redis.Redis:
    """A client once Redis answers (it may still be loading its AOF after the last fault)."""
    client = redis.Redis.from_url(url, socket_timeout=30)
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.ping()
            return client
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def changed_by(client: redis.Redis, prefix: str, fingerprint: str) -> dict[int, str]:
    """Alert version → the record whose application made it, from the alert store's record
    markers (each keeps the change it made); for explaining a finding, not for counting."""
    out: dict[int, str] = {}
    pattern = alarm_key(prefix, "applied", fingerprint, "r:*")
    for key in client.scan_iter(match=pattern, count=1000):
        raw = client.get(key)
        if not raw:
            continue
        body = json.loads(raw)[1]  # the alert (a JSON object), or its hash as HGETALL lists it
        fields = body if isinstance(body, dict) else dict(zip(body[::2], body[1::2], strict=True))
        out[int(fields["version"])] = key.decode().split(":r:", 1)[1]
    return out


def offset_gaps(records: Iterable[Record]) -> dict[int, list[int]]:
    """Partition → offsets missing between the first and the last record read (a broker that
    lost an acknowledged record after a restart would leave one)."""
    seen: dict[int, set[int]] = {}
    for r in records:
        seen.setdefault(r.partition, set()).add(r.offset)
    return {
        p: missing
        for p, offsets in seen.items()
        if (missing := sorted(set(range(min(offsets), max(offsets) + 1)) - offsets))
    }
