"""The origin's import path of ``KafkaQueue`` (it lives in ``workers.kafka.queue``)."""

from __future__ import annotations

from workers.kafka.queue import KafkaQueue

__all__ = ["KafkaQueue"]
