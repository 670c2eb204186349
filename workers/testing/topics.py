"""Topics for tests and benchmarks: created and waited for until the broker's metadata shows
every partition (a topic is not readable the moment ``create_topics`` returns)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError


def create_topics(
    admin: KafkaAdminClient | str, topics: Mapping[str, int], timeout: float = 30.0
) -> None:
    """Create ``{name: partitions}`` (existing ones are kept) on ``admin`` or a bootstrap
    address, and wait until each shows its partitions; ``TimeoutError`` after ``timeout``."""
    client = KafkaAdminClient(bootstrap_servers=admin, request_timeout_ms=30_000) if isinstance(
        admin, str
    ) else admin  # fmt: skip
    try:
        for name, partitions in topics.items():
            with contextlib.suppress(TopicAlreadyExistsError):
                client.create_topics([NewTopic(name, partitions, 1)])
        deadline = time.monotonic() + timeout
        for name, partitions in topics.items():
            while True:
                described = client.describe_topics([name])
                if described and len(described[0].get("partitions") or []) == partitions:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"topic {name} did not get {partitions} partitions")
                time.sleep(0.05)
    finally:
        if isinstance(admin, str):
            client.close()
