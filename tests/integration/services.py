"""Starting the real services for integration tests, or using external ones from the environment.

``WORKERS_TEST_REDIS=redis://...`` and ``WORKERS_TEST_KAFKA=host:port`` point the suite at
services that are already running (for example a real Apache Kafka). A missing local binary
skips the tests on a developer machine and fails them when ``CI`` is set.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from workers.testing import ServiceUnavailable, TansuBroker, free_port, wait_for_port


def unavailable(reason: str) -> None:
    """Skip locally, fail in CI: a CI run must never pass by skipping its integration tests."""
    if os.environ.get("CI"):
        pytest.fail(f"required test service unavailable in CI: {reason}", pytrace=False)
    pytest.skip(reason)


class MotoS3:
    """A local S3 (moto) that gives Tansu durable storage, so a broker can be restarted."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
        }

    def start(self) -> MotoS3:
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
        wait_for_port(self.port, self.proc, 30.0, "moto_server")
        return self

    def create_bucket(self) -> str:
        import boto3

        name = f"tansu-{uuid.uuid4().hex[:12]}"
        s3 = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None


class DurableBroker:
    """A Tansu broker on S3 storage that can be killed and restarted on the same port."""

    def __init__(self, s3: MotoS3) -> None:
        self.bucket = s3.create_bucket()
        self.broker = TansuBroker(storage=f"s3://{self.bucket}/", env=s3.env())

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def start(self) -> DurableBroker:
        self.broker.start()
        return self

    def restart(self, down_seconds: float = 0.0) -> None:
        self.broker.stop()
        time.sleep(down_seconds)
        self.broker.start()

    def stop(self) -> None:
        self.broker.stop()


@contextmanager
def durable_broker() -> Iterator[DurableBroker]:
    try:
        s3 = MotoS3().start()
    except (ServiceUnavailable, OSError) as exc:
        unavailable(f"moto_server (pip install 'moto[server]'): {exc}")
        raise AssertionError("unreachable") from exc
    try:
        broker = DurableBroker(s3).start()
        try:
            yield broker
        finally:
            broker.stop()
    finally:
        s3.stop()
