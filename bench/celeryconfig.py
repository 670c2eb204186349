"""Celery settings of the benchmark's worker and beat processes (and of its in-process app).

Everything that differs per run comes from ``BENCH_*`` variables (see ``bench.services``);
``build`` is the pure core, also used for the in-process Celery app of the pull scenario.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from workers import celery_defaults


def build(env: Mapping[str, str]) -> dict[str, Any]:
    queue = env["BENCH_QUEUE"]
    visibility = 600
    return {
        "broker_url": env["BENCH_BROKER_URL"],
        "task_default_queue": queue,
        "task_routes": {"workers.consume": {"queue": queue + ".consume"}},
        **{name: getattr(celery_defaults, name) for name in celery_defaults.__all__},
        "broker_transport_options": {"visibility_timeout": visibility},
        "worker_hijack_root_logger": True,
        "workers_kafka_clusters": {
            "bench": {"bootstrap_servers": [env["BENCH_KAFKA"]], "request_timeout_ms": 30_000}
        },
        "workers_redis_url": env["BENCH_REDIS_URL"],
        "workers_redis_key_prefix": env["BENCH_PREFIX"],
        "workers_supervise_interval": 1.0,
        "workers_pipelines": json.loads(env["BENCH_PIPELINES"]),
        "workers_alarm_output_topic": env.get("BENCH_OUTPUT", "bench-alerts"),
        # No quiet closes during a run: every change comes from an event.
        "workers_alarm_quiet_seconds": 86_400,
        "workers_alarm_dedupe_ttl_seconds": visibility * 2,
    }


if "BENCH_QUEUE" in os.environ:  # a worker or beat started by the benchmark
    globals().update(build(os.environ))
