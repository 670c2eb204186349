"""Celery settings of the chaos run's workers and beat: the end-to-end tests' settings (all from
``E2E_*`` variables) plus the ``chaos.observe`` task.

``unacked_mutex_expire`` (``CHAOS_UNACKED_MUTEX_EXPIRE``): kombu's Redis transport restores
unacknowledged messages under a Redis lock that expires after 300 s by default. A worker
SIGKILLed while it holds that lock stops every restore, by every worker, until it expires; with
the short visibility timeout of these runs that would dominate the drain time.
"""

from __future__ import annotations

import os

from tests.integration.e2e import celeryconfig_e2e as _base
from tests.integration.e2e.celeryconfig_e2e import *  # noqa: F403

imports = [*_base.imports, "tests.chaos.tasks"]
broker_transport_options = {
    **_base.broker_transport_options,
    "unacked_mutex_expire": float(os.environ.get("CHAOS_UNACKED_MUTEX_EXPIRE", "300")),
}
