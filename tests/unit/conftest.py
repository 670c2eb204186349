"""Fixtures shared by unit test modules: the puller tests' world of twins, and the Docker
stack rendered by ``docker-compose config``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.docker_stack import render_stack
from tests.unit.pulling_world import World, new_world


@pytest.fixture
def world() -> World:
    """Redis, Kafka (topic ``events``, 3 partitions) and a clock, all twins, for one test."""
    return new_world()


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict[str, Any]]:
    """(combination, variant) -> the stack as ``docker-compose config`` renders it; rendered
    once for every Docker test module (skipped without docker-compose, failed on CI)."""
    return render_stack(tmp_path_factory)
