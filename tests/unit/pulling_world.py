"""The pulling world of the puller tests: one Redis (state), one Kafka (log, with a producer
for dead letters) and one clock, all twins; a pipeline config to vary, and small readers of
what a dispatcher received. The ``world`` fixture is registered in ``tests/unit/conftest.py``."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from tests.unit.fakes import ManualClock, RecordingDispatcher
from workers.config import PipelineConfig, StartPolicy
from workers.kafka.consumer import Consumer
from workers.kafka.deadletter import DeadLetters
from workers.pulling.kafka_copy import KafkaCopy
from workers.pulling.puller import Puller
from workers.state.brake import Brake
from workers.state.keys import Space
from workers.state.leases import Owner
from workers.testing import (
    MemoryConsumer,
    MemoryLeases,
    MemoryLedger,
    MemoryLog,
    MemoryOffsetStore,
    MemoryProducer,
    MemoryState,
)

TOPIC = "events"
DLQ = "events.dlq"
SPACE = Space("t", "common", "g1", TOPIC)

PIPELINE = PipelineConfig(
    name="alarms",
    cluster="common",
    topic=TOPIC,
    group="g1",
    tasks=("alarms.parse",),
    batch_size=3,
    start=StartPolicy("earliest"),
    max_records=1000,
    max_seconds=60.0,
    dead_letter_topic=DLQ,
    lease_ttl_seconds=30.0,
)


def pipeline(**changes: Any) -> PipelineConfig:
    return replace(PIPELINE, **changes)


@dataclass
class World:
    """One Redis (state), one Kafka (log, with a producer for dead letters), one clock."""

    clock: ManualClock
    state: MemoryState
    store: MemoryOffsetStore
    ledger: MemoryLedger
    log: MemoryLog
    producer: MemoryProducer

    def dispatcher(self, **options: Any) -> RecordingDispatcher:
        """A dispatcher whose pipeline finishes each batch at once (unless ``finish=False``)."""
        return RecordingDispatcher(ledger=self.ledger, **options)

    def puller(
        self,
        config: PipelineConfig = PIPELINE,
        *,
        dispatcher: RecordingDispatcher | None = None,
        consumer: Consumer | None = None,
        token: str = "owner-a",
        until_caught_up: bool = True,
        stopping: Callable[[], bool] = lambda: False,
        budget: float = 60.0,
        brake: Brake | None = None,
        kafka_copy: KafkaCopy | None = None,
    ) -> Puller:
        return Puller(
            config,
            space=SPACE,
            store=self.store,
            ledger=self.ledger,
            budget=budget,
            brake=brake,
            leases=MemoryLeases(self.state, Owner("h", 1), config.lease_ttl_seconds, token=token),
            consumer=consumer or MemoryConsumer(self.log),
            dispatcher=dispatcher or self.dispatcher(),
            dead_letters=DeadLetters(lambda: self.producer, "common", DLQ, timeout=1.0),
            clock=self.clock,
            stopping=stopping,
            until_caught_up=until_caught_up,
            kafka_copy=kafka_copy,
        )

    def fill(self, partition: int, count: int, *, size: int = 0) -> None:
        """Append ``count`` JSON records; ``size`` pads each value to that many bytes."""
        for _ in range(count):
            n = self.log.partition(TOPIC, partition).end
            value = json.dumps({"p": partition, "n": n}).encode()
            self.log.append(TOPIC, partition, value.ljust(size), key=f"k{partition}".encode())

    def stored(self) -> dict[int, int | None]:
        return {p: pos.offset for p, pos in self.store.stored(SPACE).items()}

    def dead_letters(self) -> list[tuple[bytes, bytes, bytes]]:
        """(partition, offset, reason) headers of each dead letter delivered."""
        if self.log.partitions(DLQ) is None:
            return []
        out = []
        for r in self.log.partition(DLQ, 0).records:
            h = dict(r.headers)
            out.append((h["workers.partition"], h["workers.offset"], h["workers.reason"]))
        return out


def new_world() -> World:
    """A world whose log holds the topic ``TOPIC`` with 3 empty partitions."""
    clock = ManualClock()
    state = MemoryState(clock=clock)
    log = MemoryLog()
    log.create_topic(TOPIC, 3)
    return World(
        clock, state, MemoryOffsetStore(state), MemoryLedger(state), log, MemoryProducer(log)
    )


def sizes(dispatcher: RecordingDispatcher) -> list[int]:
    return [len(batch) for batch in dispatcher.batches]


def offsets(dispatcher: RecordingDispatcher, partition: int) -> list[int]:
    return [o for p, o in dispatcher.delivered if p == partition]


def steal(world: World, partition: int) -> None:
    """Another owner takes the partition after our lease expired."""
    world.state.leases[SPACE][partition].expires = world.clock()
    thief = MemoryLeases(world.state, Owner("other", 2), 30.0, token="thief")
    assert thief.acquire(SPACE, [partition]).partitions == [partition]
