"""The librdkafka properties of the adapters' handles, from the kafka-python options the
package validated (``workers.config.rdkafka_options.rdkafka_config`` translates the names), and
the settings the package fixes for them, each with why."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from workers.config.kafka_options import FETCH_MAX_BYTES
from workers.config.rdkafka_options import rdkafka_config

logger = logging.getLogger(__name__)

# librdkafka needs a group id even for assign(); nothing joins this group or commits under it.
GROUP_ID = "workers.rdkafka.unused"
# Records fetched ahead of the polls, at most, in units of the fetch size: kafka-python holds
# about one fetch (see FETCH_MAX_BYTES); librdkafka's default is 64 MiB per consumer.
PREFETCH_FETCHES = 4
# How long librdkafka waits to fetch again once that much was fetched ahead. Its default, 1 s,
# left the polls of a pull empty for up to a second each time the queue had been full
# (measured: 0.7-1.6 s of 7 s waiting, over 200,000 records); 20 ms leaves none.
FETCH_QUEUE_BACKOFF_MS = 20
# How long the broker may hold a fetch that found nothing, unless fetch_max_wait_ms is set.
# librdkafka sends a partition's next fetch (after a seek, say) only once the one held is
# answered: at its default, 500 ms, the first poll after a seek came back empty (measured on
# the embedded broker: 0.2-0.5 s to the first record; 100 ms: at most 0.1 s), and an empty
# poll ends a Beat cycle.
FETCH_WAIT_MS = 100


def consumer_config(options: Mapping[str, Any]) -> dict[str, Any]:
    """librdkafka properties for the kafka-python consumer ``options``: manual assignment, no
    commits, and an error instead of a reset when a position is outside the log."""
    conf = rdkafka_config(options, "consumer")
    fetch = int(conf.get("fetch.max.bytes", FETCH_MAX_BYTES))
    conf.setdefault("fetch.wait.max.ms", FETCH_WAIT_MS)
    conf.update(
        {
            "group.id": GROUP_ID,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "error",
            "enable.partition.eof": False,
            "queued.max.messages.kbytes": max(1024, PREFETCH_FETCHES * fetch // 1024),
            "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
        }
    )
    # librdkafka wants fetch.max.bytes >= message.max.bytes (1,000,000 unless lowered here)
    # and a response limit of fetch.max.bytes + 512 at least.
    conf["message.max.bytes"] = min(fetch, 1_000_000)
    conf["receive.message.max.bytes"] = max(100_000_000, fetch + 512)
    return conf


# kafka-python's delivery timeout, unless one is configured: the package waits that long for
# a send to be confirmed or failed (``workers.kafka.queue_io``); librdkafka's own is 300 s.
DELIVERY_TIMEOUT_MS = 120_000
# Settings that make kafka-python 3 turn its default idempotence off (it warns, as here).
_NOT_IDEMPOTENT = {"acks": ("0", "1"), "retries": (0,)}


def producer_config(options: Mapping[str, Any]) -> dict[str, Any]:
    """librdkafka properties for the kafka-python producer ``options``."""
    conf = rdkafka_config(options, "producer")
    conf.setdefault("acks", "all")
    conf.setdefault("delivery.timeout.ms", DELIVERY_TIMEOUT_MS)
    conf["partitioner"] = "murmur2_random"  # kafka-python's and Java's choice for a key
    if "enable_idempotence" not in options:
        conflicts = [
            f"{name}={conf[name]!r}"
            for name, values in _NOT_IDEMPOTENT.items()
            if name in conf and conf[name] in values
        ]
        if int(conf.get("max.in.flight.requests.per.connection", 5)) > 5:
            conflicts.append("max_in_flight_requests_per_connection > 5")
        if conflicts:
            logger.warning(
                "idempotence off: the configured %s conflict with it", ", ".join(conflicts)
            )
        conf["enable.idempotence"] = not conflicts
    return conf
