"""The group offsets contract on the in-memory twin (no sockets)."""

from __future__ import annotations

import pytest

from tests.contracts.group_offsets import GroupOffsetsContract, MakeGroup
from workers.testing.memory_groups import MemoryGroupOffsets, MemoryGroups


@pytest.fixture(params=[True, False], ids=["keeps-metadata", "drops-metadata"])
def groups(request: pytest.FixtureRequest) -> MemoryGroups:
    return MemoryGroups(keeps_metadata=request.param)


class TestMemoryTwin(GroupOffsetsContract):
    @pytest.fixture
    def topic(self) -> str:
        return "events"

    @pytest.fixture
    def make_group(self, groups: MemoryGroups) -> MakeGroup:
        return lambda name: MemoryGroupOffsets(groups, f"g-{name}")
