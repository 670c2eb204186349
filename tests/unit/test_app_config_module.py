"""Which config module ``workers.app`` reads (the real worker test: test_celery_config)."""

from __future__ import annotations

import pytest

from workers.app import config_module


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "celeryconfig"),
        ({"WORKERS_CELERY_CONFIG": "ours"}, "ours"),
        ({"CELERY_CONFIG_MODULE": "celerys"}, "celerys"),
        ({"CELERY_CONFIG_MODULE": "celerys", "WORKERS_CELERY_CONFIG": "ours"}, "celerys"),
        ({"CELERY_CONFIG_MODULE": " ", "WORKERS_CELERY_CONFIG": "ours"}, "ours"),
        ({"CELERY_CONFIG_MODULE": "", "WORKERS_CELERY_CONFIG": ""}, "celeryconfig"),
        ({"CELERY_CONFIG_MODULE": " spaced "}, "spaced"),
    ],
)
def test_celery_s_variable_wins_then_ours_then_the_default(
    environ: dict[str, str], expected: str
) -> None:
    assert config_module(environ) == expected
