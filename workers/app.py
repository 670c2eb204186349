"""The Celery app. Importing it reads the config module and connects to nothing."""

from __future__ import annotations

import os

from celery import Celery

from workers.runtime.setup import setup

app = Celery("workers")
app.config_from_object(os.environ.get("WORKERS_CELERY_CONFIG", "celeryconfig"))
setup(app)
