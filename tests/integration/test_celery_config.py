"""Celery's own ways of naming the config module reach a real worker of ``workers.app``:
``celery -A workers.app --config MODULE worker`` and ``CELERY_CONFIG_MODULE``, both winning over
``WORKERS_CELERY_CONFIG`` (the package's older variable, still read when Celery's is not set)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import redis

from workers.demo.services import CeleryCommand
from workers.testing import wait_until

ROOT = Path(__file__).resolve().parents[2]


def config_module(directory: Path, broker_url: str, queue: str) -> str:
    """A config module in ``directory``: the package's defaults, its own broker and queue."""
    name = f"conf_{uuid.uuid4().hex[:8]}"
    (directory / f"{name}.py").write_text(
        "from celeryconfig import *  # noqa: F403\n"
        f"broker_url = {broker_url!r}\n"
        f"task_default_queue = {queue!r}\n"
        "task_routes = {}\n"
        "beat_schedule = {}\n"
    )
    return name


@pytest.mark.parametrize("how", ["--config", "CELERY_CONFIG_MODULE", "WORKERS_CELERY_CONFIG"])
def test_a_real_worker_reads_the_config_module_celery_names(
    how: str, redis_url: str, tmp_path: Path
) -> None:
    # Arrange: a broker database of its own, so that only this worker's bindings are in it.
    broker_url = redis_url.rsplit("/", 1)[0] + "/7"
    client = redis.Redis.from_url(broker_url)
    client.flushdb()
    queue = f"from-config-{uuid.uuid4().hex[:6]}"
    module = config_module(tmp_path, broker_url, queue)
    env = {
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "CELERY_CONFIG_MODULE": "",
        # The older variable names a module that does not exist: Celery's own names must win.
        "WORKERS_CELERY_CONFIG": "no_such_config_module",
    }
    args = ["worker", "--pool", "solo", "--without-heartbeat", "--without-gossip", "-l", "INFO"]
    if how == "--config":
        args = ["--config", module, *args]
    else:
        env[how] = module
    worker = CeleryCommand("worker", args, env).start()
    try:
        # Act / Assert: the worker consumes the module's queue on the module's broker.
        wait_until(
            lambda: client.exists(f"_kombu.binding.{queue}") or worker.proc.poll() is not None,
            timeout=60,
            what="the worker to bind its queue",
        )
        assert worker.proc.poll() is None, worker.output()[-3000:]
        assert f".> {queue}" in worker.output()  # the start-up banner lists it
    finally:
        worker.stop()
        client.flushdb()
        client.close()
