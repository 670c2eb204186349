"""What one owner's pull works with, shared by its cycle, re-drives and outbox: the pipeline,
its key space and the owner's lease token, and the seams it is given (the ledger, the
consumer, the dispatcher, the dead-letter destination and the dead-letter brake)."""

from __future__ import annotations

from dataclasses import dataclass

from workers.config import PipelineConfig
from workers.kafka.consumer import Consumer
from workers.kafka.deadletter import DeadLetters
from workers.pulling.handoff import Dispatcher
from workers.state.brake import Brake
from workers.state.keys import Space
from workers.state.ledger import Ledger


@dataclass(frozen=True, slots=True)
class Parts:
    pipeline: PipelineConfig
    space: Space
    token: str
    ledger: Ledger
    consumer: Consumer
    dispatcher: Dispatcher
    dead_letters: DeadLetters
    brake: Brake | None = None
