"""kombu 5.7's Redis transport crashed a Celery worker whose broker restarted: the replay fails
without ``workers.runtime.kombu_redis`` and passes with it. (If kombu fixes it, the first case
fails: then the patch can go.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from workers.runtime.kombu_redis import install, installed

ROOT = Path(__file__).resolve().parents[2]


def replay(*flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.integration.kombu_restart_replay", *flags],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize(("flags", "code"), [((), 1), (("--fix",), 0)])
def test_a_dead_broker_crashes_kombu_without_the_fix_and_not_with_it(
    flags: tuple[str, ...], code: int
) -> None:
    done = replay(*flags)

    assert done.returncode == code, done.stdout + done.stderr
    if code == 1:
        assert "'NoneType' object has no attribute 'hostname'" in done.stdout


def test_install_is_idempotent_and_done_by_the_package_app() -> None:
    import workers.app  # noqa: F401 - setup() installs it

    first = installed()
    install()
    install()

    from kombu.transport import redis as kombu_redis

    assert first and installed()
    assert not hasattr(
        kombu_redis.Channel._connparams.__wrapped__, "_workers_detached_transport_fix"
    )
