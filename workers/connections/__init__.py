"""The per-process clients: one cache of Kafka and Redis clients per Celery app, lazy and
fork-safe (``cache``), how each client is built and closed (``clients``), and the backoff of a
service that is down (``outages``)."""

from __future__ import annotations

from workers.connections.cache import RETIRE_GRACE, Connections, connections_for
from workers.connections.clients import Factories

__all__ = ["RETIRE_GRACE", "Connections", "Factories", "connections_for"]
