"""Settings: ``workers_*`` keys of the Celery config, with environment overrides, validated once.

``settings_for(app)`` is what tasks use; ``load_settings(conf, environ)`` is the pure core.
"""

from __future__ import annotations

from workers.config.fields import mask_url
from workers.config.load import load_settings, reload_settings, settings_for
from workers.config.model import (
    AlarmSettings,
    ClusterConfig,
    MetricsSettings,
    PipelineConfig,
    RedisConfig,
    Settings,
    StartPolicy,
    mask_options,
)

__all__ = [
    "AlarmSettings",
    "ClusterConfig",
    "MetricsSettings",
    "PipelineConfig",
    "RedisConfig",
    "Settings",
    "StartPolicy",
    "load_settings",
    "reload_settings",
    "mask_options",
    "mask_url",
    "settings_for",
]
