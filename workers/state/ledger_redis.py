"""The in-flight ledger on a real Redis (or Redis Cluster: all keys of a space share a slot):
``RedisLedger`` runs the scripts of ``workers.state.ledger_lua`` and reads the books."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis

from workers.state.keys import Space
from workers.state.ledger import (
    Fence,
    InFlight,
    PartitionState,
    Settled,
    Slice,
    Snapshot,
    covers,
)
from workers.state.ledger_lua import BEGIN, EXPEDITE, FINISH, RECORD, REDRIVE
from workers.state.offsets import parse_stored
from workers.state.redis_errors import translated
from workers.state.scripting import evaluate

_NOW = "return redis.call('TIME')"


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _opt_int(raw: Any) -> int | None:
    """An integer from a Redis reply; None for nil (Lua's false arrives as None) and for a
    stored value that is not an offset."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    return parse_stored(raw)[0]


_ENTRY = re.compile(r"([0-9]{1,20}) ([0-9]{1,20}) ([0-9]{1,9}) ([0-9]{1,9}) ([0-9]{1,20})")


def parse_books(
    partition: int, raw: Mapping[Any, Any]
) -> tuple[int | None, list[InFlight], list[str]]:
    """``reach``, the slices in flight, and the fields that are not valid entries (tampered
    with: the scripts ignore them, and the partition's owner drops them) from a ledger hash as
    Redis returns it."""
    reach: int | None = None
    in_flight: list[InFlight] = []
    malformed: list[str] = []
    for name, value in raw.items():
        field, text = _text(name), _text(value)
        found = _ENTRY.fullmatch(text)
        if field == "reach" and text.isascii() and text.isdigit() and len(text) <= 20:
            reach = int(text)
        elif field.startswith("b:") and found is not None and int(found[1]) < int(found[2]):
            start, end, handoffs, starts, due = (int(x) for x in found.groups())
            in_flight.append(InFlight(partition, field[2:], start, end, handoffs, starts, due))
        else:
            malformed.append(field)
    in_flight.sort(key=lambda x: (x.start, x.batch))
    return reach, in_flight, malformed


class RedisLedger:
    """The ledger on a real Redis (or Redis Cluster: all keys of a space share a slot).

    ``ttl`` (seconds) expires the books with the offsets (see ``RedisOffsetStore``). Redis
    errors are raised as ``RecoverableError`` (connection) or ``OffsetStoreError``.
    """

    def __init__(self, client: redis.Redis, ttl: int | None = None) -> None:
        self.client = client
        self.ttl = ttl or 0
        self._record = client.register_script(RECORD)
        self._finish = client.register_script(FINISH)
        self._begin = client.register_script(BEGIN)
        self._redrive = client.register_script(REDRIVE)
        self._expedite = client.register_script(EXPEDITE)

    def snapshot(self, space: Space, partitions: Iterable[int]) -> Snapshot:
        parts = sorted(set(partitions))
        with translated(f"read the in-flight ledger of {space}"):
            pipe = self.client.pipeline(transaction=True)
            # The time of the node that holds the space (a cluster's TIME has no key to route
            # by, and its scripts read the time of that node).
            evaluate(pipe, _NOW, [space.key("offsets")], [])
            if parts:
                pipe.hmget(space.key("offsets"), [str(p) for p in parts])
                pipe.hmget(space.key("generations"), [str(p) for p in parts])
                for p in parts:
                    pipe.hgetall(space.key("ledger", p))
            replies = pipe.execute()
        seconds, micros = replies[0]
        states: dict[int, PartitionState] = {}
        if parts:
            offsets, gens, books = replies[1], replies[2], replies[3:]
            for p, offset, gen, raw in zip(parts, offsets, gens, books, strict=True):
                reach, in_flight, malformed = parse_books(p, raw)
                states[p] = PartitionState(
                    p,
                    parse_stored(offset)[0],
                    reach,
                    parse_stored(gen, 2**62)[0] or 0,
                    tuple(in_flight),
                    tuple(malformed),
                )
        return Snapshot(int(seconds) * 1000 + int(micros) // 1000, states)

    def record(
        self,
        space: Space,
        token: str,
        fences: Mapping[int, Fence],
        slices: Sequence[Slice],
        due_in_ms: int,
    ) -> dict[int, Settled]:
        if not slices:
            return {}
        _one_per_partition(slices)
        keys = [space.key("offsets"), space.key("generations")]
        args: list[Any] = [token, self.ttl, max(0, int(due_in_ms))]
        for s in slices:
            fence = fences[s.partition]
            keys += [space.key("lease", s.partition), space.key("ledger", s.partition)]
            args += [s.partition, fence.epoch, fence.generation, s.batch, s.start, s.end]
        with translated(f"record batches in flight for {space}"):
            rows = self._record(keys=keys, args=args)
        return _settled(rows)

    def finish(self, space: Space, slices: Sequence[Slice]) -> dict[int, Settled]:
        if not slices:
            return {}
        _one_per_partition(slices)
        keys = [space.key("offsets"), *(space.key("ledger", s.partition) for s in slices)]
        args: list[Any] = [self.ttl]
        for s in slices:
            args += [s.partition, s.batch]
        with translated(f"finish batches of {space}"):
            rows = self._finish(keys=keys, args=args)
        return _settled(rows)

    def begin(
        self, space: Space, slices: Sequence[Slice], budget_ms: int, max_starts: int
    ) -> list[int | None]:
        if not slices:
            return []
        keys = [space.key("ledger", s.partition) for s in slices]
        args: list[Any] = [max(0, int(budget_ms)), max_starts, *(s.batch for s in slices)]
        with translated(f"begin a batch of {space}"):
            rows = self._begin(keys=keys, args=args)
        return [None if int(n) < 0 else int(n) for n in rows]

    def redrive(
        self,
        space: Space,
        token: str,
        fence: Fence,
        entry: InFlight,
        parts: Sequence[Slice],
        due_in_ms: int,
    ) -> str:
        covers(entry, parts)
        p = entry.partition
        keys = [
            space.key("offsets"),
            space.key("generations"),
            space.key("lease", p),
            space.key("ledger", p),
        ]
        args: list[Any] = [token, fence.epoch, fence.generation, p, entry.batch]
        args.append(max(0, int(due_in_ms)))
        for part in parts:
            args += [part.batch, part.start, part.end]
        with translated(f"re-drive a batch of {space}"):
            return _text(self._redrive(keys=keys, args=args))

    def expedite(self, space: Space, slices: Sequence[Slice], *, unstart: bool = False) -> None:
        if not slices:
            return
        keys = [space.key("ledger", s.partition) for s in slices]
        with translated(f"expedite batches of {space}"):
            self._expedite(keys=keys, args=[int(unstart), *(s.batch for s in slices)])


def _settled(rows: Sequence[Sequence[Any]]) -> dict[int, Settled]:
    return {
        int(p): Settled(_text(status), _opt_int(c), None if int(n) < 0 else int(n))
        for p, status, c, n in rows
    }


def _one_per_partition(slices: Sequence[Slice]) -> None:
    partitions = [s.partition for s in slices]
    if len(set(partitions)) != len(partitions):
        raise ValueError(f"at most one slice per partition in one call: {partitions}")
