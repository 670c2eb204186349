"""The tests of everything the package keeps in Redis, unchanged, on a real Redis Cluster of
three masters: the offset store, lease and ledger contracts, the dead-letter brake against its
twin, and the alert store's and the alarm stages' tests. Here ``redis_client`` and
``redis_url`` are the cluster's (``redis+cluster://``), so a script whose keys span hash
slots, or a pipeline or transaction the cluster cannot route, fails them.

The tests are imported from their modules (pytest collects them here again, with this
module's fixtures); each keeps its own name, prefixed with its module's.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.redis_ha import ClusterSet
from tests.integration.test_ledger_contract import TestRedis as TestLedgerOnCluster
from tests.integration.test_offsets_contract import TestRedis as TestOffsetsOnCluster
from workers.connections.redis_clients import redis_client as client_for

__all__ = ["TestLedgerOnCluster", "TestOffsetsOnCluster"]

_MODULES = (
    "test_brake_contract",
    "test_alarm_state_batches",
    "test_alarm_state_idempotence",
    "test_alarm_state_lifecycle",
    "test_alarm_state_model",
    "test_alarm_state_sweep",
    "test_alarm_stages_output",
    "test_alarm_stages_parse",
    "test_alarm_stages_publish",
    "test_alarm_stages_sweep",
)
for _name in _MODULES:
    _module = importlib.import_module(f"tests.integration.{_name}")
    for _test, _function in vars(_module).items():
        if _test.startswith("test_") and callable(_function):
            globals()[f"{_name}__{_test.removeprefix('test_')}"] = _function


@pytest.fixture
def redis_url(redis_cluster: ClusterSet) -> str:
    return redis_cluster.url


@pytest.fixture
def redis_client(redis_cluster: ClusterSet) -> Iterator[Any]:
    client = client_for(redis_cluster.url, socket_timeout=10)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _one_slot_per_call(request: pytest.FixtureRequest) -> None:
    """``AlertStore(per_slot=False)`` (a plain server's mode: chunks of any fingerprints in one
    script call) is what a cluster refuses; the tests run it only on a plain server."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("per_slot") is False:
        pytest.skip("per_slot=False calls span hash slots: a plain server's mode")


def test_the_cluster_spreads_the_keys_of_one_test_over_its_masters(
    redis_client: Any, key_prefix: str
) -> None:
    """The imported tests prove something only if their keys land on several masters."""
    keys = [f"{key_prefix}:probe:{i}" for i in range(30)]
    for key in keys:
        redis_client.set(key, 1)

    owners = {redis_client.get_node_from_key(key).name for key in keys}

    assert len(owners) == 3
