"""The offset store and lease contract on the in-memory twins (a manual clock, no sockets)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.contracts.offsets_leases import MakeLeases, OffsetStoreContract
from tests.unit.fakes import ManualClock
from workers.state.leases import Owner
from workers.testing import MemoryLeases, MemoryOffsetStore, MemoryState


class TestMemoryTwin(OffsetStoreContract):
    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock()

    @pytest.fixture
    def state(self, clock: ManualClock) -> MemoryState:
        return MemoryState(clock=clock)

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
