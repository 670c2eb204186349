"""Fixtures for the end-to-end tests: a factory of worker/beat clusters, stopped at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.e2e.harness import Cluster, make_env

ClusterFactory = Callable[..., Cluster]


@pytest.fixture
def celery_cluster(
    kafka_bootstrap: str, redis_url: str, key_prefix: str, tmp_path: Path
) -> Iterator[ClusterFactory]:
    made: list[Cluster] = []

    def make(pipelines: dict[str, Any], **extra: str) -> Cluster:
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
