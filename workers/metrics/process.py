"""The worker's metrics over its life, wired to Celery's signals by ``connect(app)``.

``worker_init`` (the main process, before the pool forks): with ``workers_metrics_port`` set,
take the multiprocess directory (emptied), listen on the port, make the metrics and record
from then on; pool processes forked later inherit all of it and write files of their own.
``worker_process_shutdown`` (a pool process ending): its gauges leave the sums.
``worker_shutdown`` (the main process): stop listening and give the directory back.

A directory that cannot be used or a port that cannot be bound is one error line in the
log; the worker runs on without metrics. Without a port nothing here runs at all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from celery import signals

from workers.config import Settings, settings_for
from workers.exceptions import ConfigError
from workers.metrics import record

if TYPE_CHECKING:  # prometheus_client is imported only by a worker that serves metrics
    from workers.metrics.directory import Activation, Directory
    from workers.metrics.endpoint import Endpoint

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Serving:
    """A worker's metrics while it runs: its endpoint, directory and what was activated."""

    endpoint: Endpoint
    directory: Directory
    activation: Activation


_serving: Serving | None = None


def start(settings: Settings) -> Serving | None:
    """Serve this worker's metrics and record from now on; None when metrics are off (no
    port) or cannot be kept here (logged: one line that says why)."""
    config = settings.metrics
    if config.port is None:
        return None
    # Imported now, after the worker's start: see ``activate``.
    from workers.metrics.directory import MetricsUnavailable, activate, prepare, release
    from workers.metrics.endpoint import serve
    from workers.metrics.registry import build

    try:
        directory = prepare(config.directory)
    except MetricsUnavailable as exc:
        logger.error("%s; this worker runs on without metrics", exc)
        return None
    try:
        endpoint = serve(config.address, config.port, directory.path)
    except OSError as exc:
        release(directory)
        logger.error(
            "metrics: cannot listen on %s port %d (workers_metrics_port): %s; this worker "
            "runs on without metrics",
            config.address, config.port, exc.strerror or exc,
        )  # fmt: skip
        return None
    activation = activate(directory.path)
    record.enable(build(), settings.pipelines)
    logger.info(
        "metrics: serving /metrics on %s port %d (files in %s)",
        config.address, config.port, directory.path,
    )  # fmt: skip
    return Serving(endpoint, directory, activation)


def stop(serving: Serving) -> None:
    """Stop recording and listening, and give the directory back."""
    from workers.metrics.directory import deactivate, release

    record.disable()
    serving.endpoint.stop()
    deactivate(serving.activation)
    release(serving.directory)


def connect(app: Any) -> None:
    """Run ``app``'s workers' metrics from Celery's signals (see the module)."""
    init = partial(_on_worker_init, app)
    signals.worker_init.connect(init, weak=False, dispatch_uid=f"workers.metrics:{id(app)}")
    # Process-wide, whichever app started the metrics: connected once.
    signals.worker_process_shutdown.connect(
        _on_process_shutdown, weak=False, dispatch_uid="workers.metrics"
    )
    signals.worker_shutdown.connect(_on_worker_shutdown, weak=False, dispatch_uid="workers.metrics")


def _on_worker_init(app: Any, sender: Any = None, **_: Any) -> None:
    global _serving
    if getattr(sender, "app", None) is not app or _serving is not None:
        return
    try:
        settings = settings_for(app)
    except ConfigError:
        return  # the worker's start-up check stops it with this error
    _serving = start(settings)


def _on_process_shutdown(pid: int | None = None, **_: Any) -> None:
    serving = _serving
    if serving is not None and pid is not None:
        from workers.metrics.directory import mark_dead

        mark_dead(serving.directory.path, pid)


def _on_worker_shutdown(**_: Any) -> None:
    global _serving
    serving, _serving = _serving, None
    if serving is not None:
        stop(serving)
