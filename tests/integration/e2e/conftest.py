"""Fixtures for the end-to-end tests: a factory of worker/beat clusters, stopped at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.brokers import Broker
from tests.integration.e2e.harness import Cluster, make_env

ClusterFactory = Callable[..., Cluster]


# Modules whose tests run in every execution mode of a pipeline's stages.
EVERY_EXECUTION = pytest.mark.parametrize("execution", ["chain", "fused"], indirect=True)
# Modules whose tests (delivery, crashes, bad input) run in every execution mode and on every
# Kafka client library: not all four pairs, each mode and each library at least once.
EVERY_VARIANT = pytest.mark.parametrize(
    ("execution", "client_library"),
    [("chain", "kafka-python"), ("fused", "kafka-python"), ("fused", "confluent")],
    indirect=True,
)
# The same, and one more run with a RabbitMQ broker (``celery_broker``); the Redis runs keep
# their ids.
EVERY_EXECUTION_AND_RABBITMQ = pytest.mark.parametrize(
    ("execution", "celery_broker"),
    [pytest.param("chain", "redis", id="chain"), pytest.param("fused", "redis", id="fused"),
     pytest.param("chain", "rabbitmq", id="chain-rabbitmq")],
    indirect=True,
)  # fmt: skip
EVERY_VARIANT_AND_RABBITMQ = pytest.mark.parametrize(
    ("execution", "client_library", "celery_broker"),
    [pytest.param("chain", "kafka-python", "redis", id="chain-kafka-python"),
     pytest.param("fused", "kafka-python", "redis", id="fused-kafka-python"),
     pytest.param("fused", "confluent", "redis", id="fused-confluent"),
     pytest.param("chain", "kafka-python", "rabbitmq", id="chain-kafka-python-rabbitmq")],
    indirect=True,
)  # fmt: skip


@pytest.fixture
def execution(request: pytest.FixtureRequest) -> str:
    """How pipelines without an ``execution`` of their own run their stages: ``chain``
    unless a module parametrizes it (``EVERY_EXECUTION``)."""
    return str(getattr(request, "param", "chain"))


@pytest.fixture
def client_library(request: pytest.FixtureRequest) -> str:
    """The Kafka client library of the workers' cluster: kafka-python unless a module
    parametrizes it (``EVERY_VARIANT``); confluent needs the ``[confluent]`` extra."""
    library = str(getattr(request, "param", "kafka-python"))
    if library == "confluent":
        pytest.importorskip("confluent_kafka", reason="the [confluent] extra is not installed")
    return library


@pytest.fixture
def celery_cluster(
    kafka_bootstrap: str,
    redis_url: str,
    key_prefix: str,
    tmp_path: Path,
    execution: str,
    client_library: str,
    celery_broker: Broker,
) -> Iterator[ClusterFactory]:
    made: list[Cluster] = []

    def make(pipelines: dict[str, Any], **extra: str) -> Cluster:
        pipelines = {name: {"execution": execution, **p} for name, p in pipelines.items()}
        extra = {"WORKERS_KAFKA_TEST_CLIENT_LIBRARY": client_library,
                 "E2E_BROKER_URL": celery_broker.url, **extra}  # fmt: skip
        env, queue = make_env(
            kafka=kafka_bootstrap, redis_url=redis_url, prefix=key_prefix,
            pipelines=pipelines, **extra,
        )  # fmt: skip
        cluster = Cluster(env, tmp_path, queue)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.stop()
        print(cluster.logs_text())  # shown by pytest when the test failed
