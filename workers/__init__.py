"""Celery workers that move Kafka records into alarm-processing pipelines.

Importing this package connects to nothing; see ``workers.app`` for the Celery app.
"""

from __future__ import annotations

from workers.exceptions import (
    ConfigError,
    InvalidRecord,
    OffsetStoreError,
    RecoverableError,
    WorkersError,
)

__version__ = "0.2.0"

__all__ = [
    "ConfigError",
    "InvalidRecord",
    "OffsetStoreError",
    "RecoverableError",
    "WorkersError",
    "__version__",
]
