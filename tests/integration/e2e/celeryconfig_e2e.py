"""Celery settings for the worker and beat subprocesses of the end-to-end tests.

Everything that differs per test comes from ``E2E_*`` variables set by the harness.
"""

from __future__ import annotations

import json
import os

from workers.celery_defaults import *  # noqa: F403

broker_url = os.environ["E2E_BROKER_URL"]
task_default_queue = os.environ["E2E_QUEUE"]
task_routes = {"workers.consume": {"queue": os.environ["E2E_QUEUE"] + ".consume"}}
# Short, so the messages a SIGKILLed worker had reserved come back within the test.
broker_transport_options = {
    "visibility_timeout": float(os.environ.get("E2E_VISIBILITY", "60")),
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}
worker_hijack_root_logger = True
imports = ["tests.integration.e2e.tasks"]

workers_kafka_clusters = {
    "test": {"bootstrap_servers": [os.environ["E2E_KAFKA"]], "request_timeout_ms": 30_000}
}
if os.environ.get("E2E_SECRET"):  # a cluster no pipeline reads, whose password must never show
    workers_kafka_clusters["secure"] = {
        "bootstrap_servers": ["127.0.0.1:9"],
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "alarms",
        "sasl_plain_password": os.environ["E2E_SECRET"],
    }
workers_redis_url = os.environ["E2E_REDIS_URL"]
workers_redis_key_prefix = os.environ["E2E_PREFIX"]
workers_supervise_interval = 1.0
workers_pipelines = json.loads(os.environ["E2E_PIPELINES"])
