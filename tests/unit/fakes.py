"""The fakes unit tests use: clients that record how they were built, a manual clock, a
recording dispatcher, a paged consumer and an offset store that changes the world before
a commit."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError

from workers.connections import Factories
from workers.exceptions import RecoverableError
from workers.pulling.handoff import Unencodable
from workers.pulling.tickets import Ticket
from workers.state.keys import Space
from workers.state.ledger import Ledger
from workers.state.offsets import Checkpoint, Mode, Outcome
from workers.testing import MemoryConsumer, MemoryLog, MemoryOffsetStore, MemoryRecord, MemoryState


class FakeClient:
    """Stands in for a kafka-python or redis client; remembers its options and closing."""

    def __init__(self, kind: str, **options: Any) -> None:
        self.kind = kind
        self.options = options
        self.closed = False

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


class ClientFactory:
    """Builds FakeClients; raises KafkaTimeoutError, as kafka-python does, while ``down``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.built: list[FakeClient] = []
        self.attempts = 0
        self.down = False

    def __call__(self, **options: Any) -> FakeClient:
        self.attempts += 1
        if self.down:
            raise KafkaTimeoutError("Unable to bootstrap")
        client = FakeClient(self.kind, **options)
        self.built.append(client)
        return client


class FakeFactories:
    def __init__(self) -> None:
        self.producer = ClientFactory("producer")
        self.consumer = ClientFactory("consumer")
        self.admin = ClientFactory("admin")
        self.redis = ClientFactory("redis")

    def factories(self) -> Factories:
        return Factories(
            producer=self.producer, consumer=self.consumer, admin=self.admin, redis=self.redis
        )


class ManualClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingDispatcher:
    """A ``Dispatcher`` that keeps each batch as Celery's json serializer would pass it on.

    With a ``ledger`` it stands for a pipeline too: each batch is finished in the ledger as
    soon as it is handed off, unless ``finish`` is False (then ``finish_all()`` or
    ``finish_batch(n)`` do it later, as a slow pipeline would, and lost batches are left).
    ``fail_on`` holds hand-off numbers (1-based, counting attempts) that raise
    ``RecoverableError``; ``on_hand_off(n)`` runs after hand-off ``n`` was accepted (to change
    the world mid-cycle); ``backlog()`` returns ``waiting``.
    """

    def __init__(
        self,
        *,
        ledger: Ledger | None = None,
        finish: bool = True,
        fail_on: Iterable[int] = (),
        on_hand_off: Callable[[int], None] | None = None,
        waiting: int | None = 0,
    ) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.tickets: list[Ticket] = []
        self.attempts = 0
        self.ledger = ledger
        self.finish = finish
        self.fail_on = set(fail_on)
        self.on_hand_off = on_hand_off
        self.waiting = waiting

    def hand_off(self, batch: Sequence[dict[str, Any]], ticket: Ticket) -> None:
        self.attempts += 1
        if self.attempts in self.fail_on:
            raise RecoverableError(f"broker refused hand-off {self.attempts}")
        try:
            encoded = json.dumps(list(batch))
        except (TypeError, ValueError) as exc:
            raise Unencodable(
                f"a batch of {len(batch)} records cannot be encoded: {exc!r}"
            ) from exc
        self.batches.append(json.loads(encoded))
        self.tickets.append(ticket)
        if self.ledger is not None and self.finish:
            self.ledger.finish(ticket.space, ticket.slices)
        if self.on_hand_off is not None:
            self.on_hand_off(self.attempts)

    def finish_batch(self, n: int) -> None:
        """Finish the ``n``-th batch handed off (0-based), as its last stage would."""
        assert self.ledger is not None
        ticket = self.tickets[n]
        self.ledger.finish(ticket.space, ticket.slices)

    def finish_all(self) -> None:
        for n in range(len(self.tickets)):
            self.finish_batch(n)

    def backlog(self) -> int | None:
        return self.waiting

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [m for batch in self.batches for m in batch]

    @property
    def delivered(self) -> list[tuple[int, int]]:
        """(partition, offset) of every message handed off, in hand-off order."""
        return [(m["partition"], m["offset"]) for m in self.messages]


class PagedConsumer(MemoryConsumer):
    """A ``MemoryConsumer`` whose polls return at most ``max_poll_records`` records, take
    ``poll_seconds`` on ``clock``, and first call ``before_poll(n)`` (n counts polls from 1)."""

    def __init__(
        self,
        log: MemoryLog,
        *,
        max_poll_records: int | None = None,
        clock: ManualClock | None = None,
        poll_seconds: float = 0.0,
        before_poll: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(log)
        self.max_poll_records = max_poll_records
        self.clock = clock
        self.poll_seconds = poll_seconds
        self.before_poll = before_poll
        self.polls = 0

    def poll(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> Mapping[TopicPartition, Sequence[MemoryRecord]]:
        self.polls += 1
        if self.before_poll is not None:
            self.before_poll(self.polls)
        if self.clock is not None:
            self.clock.advance(self.poll_seconds)
        if self.max_poll_records is not None:
            max_records = min(max_records or self.max_poll_records, self.max_poll_records)
        return super().poll(timeout_ms, max_records)


class HookedOffsetStore(MemoryOffsetStore):
    """A ``MemoryOffsetStore`` that calls ``before_commit(mode)`` before each commit (to lose a
    lease or reset offsets just before a fenced write)."""

    def __init__(
        self, state: MemoryState, before_commit: Callable[[Mode], None] | None = None
    ) -> None:
        super().__init__(state)
        self.before_commit = before_commit
        self.modes: list[Mode] = []

    def commit(
        self, space: Space, token: str, checkpoints: Sequence[Checkpoint], mode: Mode = "advance"
    ) -> dict[int, Outcome]:
        self.modes.append(mode)
        if self.before_commit is not None:
            self.before_commit(mode)
        return super().commit(space, token, checkpoints, mode)
