"""End to end on a Redis Cluster: real workers and Beat keep offsets, leases, the in-flight
ledger and alert state in a cluster of three masters (``workers_redis_url`` is its
``redis+cluster://`` URL), while the Celery broker stays a plain redis-server (kombu has no
Redis Cluster transport). The pull tests and the alarm test run here unchanged: imported from
their modules, collected again with this module's ``celery_cluster`` and ``redis_client``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.e2e.conftest import ClusterFactory
from tests.integration.e2e.test_alarms import (
    test_random_events_build_exactly_the_alerts_of_the_reference_model,
)
from tests.integration.e2e.test_delivery import (
    test_every_record_reaches_the_first_task_exactly_once,
    test_two_workers_never_hand_off_the_same_record,
)
from tests.integration.redis_ha import ClusterSet
from workers.connections.redis_clients import redis_client as client_for

pytestmark = pytest.mark.slow

__all__ = [
    "test_every_record_reaches_the_first_task_exactly_once",
    "test_random_events_build_exactly_the_alerts_of_the_reference_model",
    "test_two_workers_never_hand_off_the_same_record",
]


@pytest.fixture
def redis_client(redis_cluster: ClusterSet) -> Iterator[Any]:
    client = client_for(redis_cluster.url, socket_timeout=10)
    yield client
    client.close()


@pytest.fixture
def celery_cluster(celery_cluster: ClusterFactory, redis_cluster: ClusterSet) -> ClusterFactory:
    """Workers whose Redis is the cluster; their broker stays the test's (``celery_broker``:
    the plain redis-server)."""

    def make(pipelines: dict[str, Any], **extra: str) -> Any:
        return celery_cluster(pipelines, **{"E2E_REDIS_URL": redis_cluster.url, **extra})

    return make
