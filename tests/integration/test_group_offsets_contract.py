"""The group offsets contract on the real broker: ``KafkaGroupOffsets`` on the connection
cache's group clients (kafka-python consumers with a group id that never join)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.contracts.group_offsets import GroupOffsetsContract, MakeGroup
from tests.integration.conftest import TopicFactory
from workers.config import Settings
from workers.connections import Connections
from workers.kafka.group_offsets import KafkaGroupOffsets


class TestKafka(GroupOffsetsContract):
    @pytest.fixture
    def topic(self, new_topic: TopicFactory) -> str:
        return new_topic(2)

    @pytest.fixture
    def make_group(self, settings_factory: Callable[..., Settings]) -> Iterator[MakeGroup]:
        cache = Connections(settings_factory())
        run = uuid.uuid4().hex[:8]

        def make(name: str) -> KafkaGroupOffsets:
            group = f"contract-{run}-{name}"
            return KafkaGroupOffsets(lambda: cache.group("common", group), group)

        yield make
        cache.close()
