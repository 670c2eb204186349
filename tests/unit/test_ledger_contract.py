"""The in-flight ledger contract on the in-memory twins (a manual clock, no sockets)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.contracts.ledger import LedgerContract, MakeLeases
from tests.unit.fakes import ManualClock
from workers.state.leases import Owner
from workers.testing import MemoryLeases, MemoryLedger, MemoryOffsetStore, MemoryState


class TestMemoryTwin(LedgerContract):
    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock()

    @pytest.fixture
    def state(self, clock: ManualClock) -> MemoryState:
        return MemoryState(clock=clock)

    @pytest.fixture
    def ledger(self, state: MemoryState) -> MemoryLedger:
        return MemoryLedger(state)

    @pytest.fixture
    def store(self, state: MemoryState) -> MemoryOffsetStore:
        return MemoryOffsetStore(state)

    @pytest.fixture
    def make_leases(self, state: MemoryState) -> MakeLeases:
        def make(name: str, ttl: float = 30.0, task: str = "") -> MemoryLeases:
            return MemoryLeases(state, Owner(f"host-{name}", 1000, task), ttl)

        return make

    @pytest.fixture
    def expire(self, clock: ManualClock) -> Callable[[float], None]:
        return clock.advance
