"""The Celery app. Importing it reads the config module and connects to nothing.

The config module is the one Celery's own ``--config`` option names (``celery -A workers.app
--config mymodule worker``: Celery puts it in ``CELERY_CONFIG_MODULE`` before importing the app),
else ``WORKERS_CELERY_CONFIG``, else ``celeryconfig``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from celery import Celery

from workers.runtime.setup import setup


def config_module(environ: Mapping[str, str] = os.environ) -> str:
    """The config module's name: ``CELERY_CONFIG_MODULE`` (Celery's ``--config``), else
    ``WORKERS_CELERY_CONFIG``, else ``celeryconfig``; an empty variable counts as unset."""
    for name in ("CELERY_CONFIG_MODULE", "WORKERS_CELERY_CONFIG"):
        if environ.get(name, "").strip():
            return environ[name].strip()
    return "celeryconfig"


app = Celery("workers")
app.config_from_object(config_module())
setup(app)
