"""The Beat schedule generated from the pipelines, and ``setup(app)`` that installs it.

Every ``beat`` pipeline gets a ``workers.pull`` entry at its interval; if any pipeline is
``long_lived``, one ``workers.supervise`` entry restarts consumer slots that died; if any
pipeline chains ``workers.alarms.build``, one ``workers.alarms.sweep`` entry closes quiet
alerts. Entries of the app's own ``beat_schedule`` with the same names win.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from workers.config import Settings, reload_settings


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Schedule entries for ``settings``. A queued pull that waited past ``expires`` is dropped:
    after an outage the worker does not chew through a backlog of stale pulls."""
    entries: dict[str, dict[str, Any]] = {}
    for name, pipeline in sorted(settings.pipelines.items()):
        if pipeline.mode == "beat":
            entries[f"workers.pull:{name}"] = {
                "task": "workers.pull",
                "schedule": pipeline.interval,
                "args": (name,),
                "options": {"expires": max(10.0, 3 * pipeline.interval)},
            }
    if any("workers.alarms.build" in p.tasks for p in settings.pipelines.values()):
        entries["workers.alarms.sweep"] = {
            "task": "workers.alarms.sweep",
            "schedule": settings.alarms.sweep_interval,
            "options": {"expires": settings.alarms.sweep_interval},
        }
    if any(p.mode == "long_lived" for p in settings.pipelines.values()):
        entries["workers.supervise"] = {
            "task": "workers.supervise",
            "schedule": settings.supervise_interval,
            "options": {"expires": settings.supervise_interval},
        }
    return entries


def setup(app: Celery) -> None:
    """Make ``app`` run the pipelines: register the tasks, merge the generated Beat schedule
    into ``beat_schedule`` when the app is configured, stop consumers before the pool at worker
    shutdown, keep workers alive through a restart of a Redis broker (kombu's transport
    would otherwise crash them), wait for the broker's publisher confirms on an AMQP broker
    (``workers.runtime.kombu_amqp``), and serve a worker's metrics when
    ``workers_metrics_port`` is set. ``workers.app`` does this for its own app; call it for
    yours."""
    from workers.metrics import process as metrics
    from workers.runtime import kombu_json, logformat, logmask
    from workers.runtime.kombu_redis import install
    from workers.runtime.shutdown import StopConsumers

    install()  # a worker survives its Redis broker restarting (see the module)
    kombu_json.install()  # the Redis transport's envelopes written by orjson (see the module)
    logmask.connect(app)  # secrets never reach a worker's or beat's log
    logformat.connect(app)  # task id and name in every line; JSON lines if configured
    metrics.connect(app)  # a worker's /metrics, when workers_metrics_port is set
    app.steps["worker"].add(StopConsumers)
    app.on_after_configure.connect(_amqp_defaults, sender=app, weak=False)
    app.on_after_configure.connect(_merge_schedule, sender=app, weak=False)  # each (re)config
    if app.configured:
        _amqp_defaults(app)
        _merge_schedule(app)
    import workers.alarms.tasks  # noqa: F401 - registers the shared tasks
    import workers.pulling.tasks  # noqa: F401
    import workers.stages.fused  # noqa: F401


def _amqp_defaults(sender: Celery, **_: Any) -> None:
    from workers.runtime.kombu_amqp import apply_defaults

    apply_defaults(sender)  # before the connection pool exists: it copies the options


def _merge_schedule(sender: Celery, **_: Any) -> None:
    generated = beat_schedule(reload_settings(sender))
    sender.conf.beat_schedule = {**generated, **(sender.conf.beat_schedule or {})}
