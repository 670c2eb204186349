"""Celery settings for the workers package; every value can be overridden from the environment.

Celery's own settings come first; the package's settings are the ``workers_*`` keys below
(see the README's configuration reference). ``WORKERS_*`` variables and the origin's
``KAFKA_HOST`` / ``KAFKA_PORT`` / ``ALERT_KAFKA_HOST`` / ``ALERT_KAFKA_PORT`` /
``KAFKA_CONSUMER_GROUP`` are applied on top when the settings are loaded.
"""

from __future__ import annotations

import os

# -- Celery ------------------------------------------------------------------------------------
# JSON only, late acks, prefetch 1: what the package's delivery guarantees rest on.
from workers.celery_defaults import *  # noqa: F403

broker_url = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
result_backend = os.environ.get("CELERY_RESULT_BACKEND") or None
# Redis redelivers a message whose worker died after this long; a batch whose message is lost
# or stuck is handed off again by the ledger sooner (the pipeline's redrive_seconds). kombu
# restores unacknowledged messages under a lock that a SIGKILLed worker can leave held: it
# expires after unacked_mutex_expire (kombu: 300 s, during which nothing is restored).
broker_transport_options = {"visibility_timeout": 3600, "unacked_mutex_expire": 60}
# Long-lived consumers hold a pool process each: they run on a worker of their own
# (`celery -A workers.app worker -Q consumers`), never beside the stages they feed.
task_routes = {"workers.consume": {"queue": "consumers"}}
timezone = "UTC"
enable_utc = True

# -- workers: Kafka clusters -------------------------------------------------------------------
workers_kafka_clusters = {
    "common": {"bootstrap_servers": ["127.0.0.1:9092"], "reconnect_seconds": 60, "timeout": 6},
    "alert": {"bootstrap_servers": ["127.0.0.1:9092"], "reconnect_seconds": 60, "timeout": 6},
}

# -- workers: Redis for offsets, leases and alert state ----------------------------------------
workers_redis_url = "redis://127.0.0.1:6379/1"
workers_redis_key_prefix = "workers"

# -- workers: pipelines ------------------------------------------------------------------------
workers_default_group = "workers"
workers_pipelines = {
    "alarms": {
        "cluster": "alert",
        "topic": "alarm-events",
        "tasks": ["workers.alarms.parse", "workers.alarms.build", "workers.alarms.publish"],
        # The three stages in one Celery task per batch (README, "Fused execution").
        "execution": "fused",
        "batch_size": 500,
        "mode": "beat",
        "interval": 1.0,
        "start": "latest",
    },
}
