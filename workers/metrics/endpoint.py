"""The worker's HTTP endpoint: ``GET /metrics`` in the Prometheus text format, the sum over every
process of the worker (``MultiProcessCollector`` on its multiprocess directory).

It runs in a daemon thread of the worker's main process. Before each scrape, processes that
are gone without saying so (a pool process killed by a signal) are marked dead, so their
gauges do not linger in the sums.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

from workers.metrics.directory import sweep

logger = logging.getLogger(__name__)
_merging: Any = MultiProcessCollector  # untyped


class _Files:
    """The metrics in a multiprocess directory, with the dead processes swept first."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._merged = _merging(None, path)

    def collect(self) -> Iterator[Any]:
        gone = sweep(self.path)
        if gone:
            logger.info("metrics: processes %s are gone; their gauges are dropped", gone)
        yield from self._merged.collect()


@dataclass
class Endpoint:
    """A running endpoint; ``stop`` closes its socket."""

    address: str
    port: int
    server: Any
    thread: threading.Thread

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def registry_for(path: str, extra: Iterable[Any] = ()) -> CollectorRegistry:
    """The registry a scrape reads: the directory's metrics, and ``extra`` collectors."""
    registry = CollectorRegistry()
    registry.register(_Files(path))
    for collector in extra:
        registry.register(collector)
    return registry


def serve(address: str, port: int, path: str, extra: Iterable[Any] = ()) -> Endpoint:
    """Serve the metrics of directory ``path`` on ``address:port``; raises ``OSError`` when
    it cannot listen there (the port is in use, the address is not this host's)."""
    server, thread = start_http_server(port, address, registry_for(path, extra))
    return Endpoint(address, port, server, thread)
