"""Shared test configuration: integration tests are marked by folder."""

from __future__ import annotations

from pathlib import Path

import pytest

# The contract suites live outside test modules: let pytest explain their failed asserts too.
pytest.register_assert_rewrite("tests.contracts")

_INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _INTEGRATION in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _no_pull_failures() -> None:
    """Pull failures are remembered per process (for backoff): no test sees another's."""
    from workers.pulling.failures import PULL_FAILURES

    PULL_FAILURES.clear()
