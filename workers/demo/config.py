"""Celery settings of the demo's worker and beat (and of ``workers`` commands pointed at a
demo left running with ``--keep``): ``WORKERS_CELERY_CONFIG=workers.demo.config``.

Where the services are comes from ``WORKERS_DEMO_REDIS`` (``redis://host:port``; db 0 is the
Celery broker, db 1 the package's state) and ``WORKERS_DEMO_KAFKA`` (``host:port``).
"""

from __future__ import annotations

import os

from workers.celery_defaults import *  # noqa: F403
from workers.demo import CONSUME_QUEUE as _CONSUME_QUEUE
from workers.demo import OUTPUT as _OUTPUT
from workers.demo import QUEUE as _QUEUE
from workers.demo import TOPIC as _TOPIC

_redis = os.environ.get("WORKERS_DEMO_REDIS", "redis://127.0.0.1:6379").rstrip("/")
_kafka = os.environ.get("WORKERS_DEMO_KAFKA", "127.0.0.1:9092")


broker_url = f"{_redis}/0"
task_default_queue = _QUEUE
# A long-lived consumer holds a pool process; it gets its own queue so it never waits behind
# the alarm stages (or they behind it).
task_routes = {"workers.consume": {"queue": _CONSUME_QUEUE}}
broker_transport_options = {"visibility_timeout": 300}
worker_hijack_root_logger = True

workers_kafka_clusters = {"demo": {"bootstrap_servers": [_kafka], "reconnect_seconds": 300}}
workers_redis_url = f"{_redis}/1"
workers_redis_key_prefix = "demo"
workers_supervise_interval = 2.0
workers_alarm_output_topic = _OUTPUT
# Short, so alerts that go quiet are closed while the demo runs.
workers_alarm_quiet_seconds = 10.0
workers_alarm_sweep_interval = 2.0
workers_alarm_dedupe_ttl_seconds = 3600
workers_pipelines = {
    "alarms": {
        "cluster": "demo",
        "topic": _TOPIC,
        "tasks": ["workers.alarms.parse", "workers.alarms.build", "workers.alarms.publish"],
        "execution": "fused",
        "mode": "long_lived",
        "concurrency": 1,
        "start": "earliest",
        "batch_size": 200,
        "max_seconds": 0.5,
        "max_runtime_seconds": 120,
    },
}
