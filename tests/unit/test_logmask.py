"""The log filter that keeps secrets out of worker logs: messages, their arguments and
tracebacks, whatever logger or library wrote them."""

from __future__ import annotations

import logging

import pytest
from celery import Celery

from workers.runtime.logmask import MaskSecrets, install

SECRET = "s3cr3t-Pa55"


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Celery:
    monkeypatch.setenv("CELERY_BROKER_URL", f"redis://:{SECRET}@broker:6379/0")
    app = Celery("t", set_as_current=False)
    app.conf.workers_kafka_clusters = {
        "alert": {"bootstrap_servers": ["k:9092"], "sasl_plain_password": "kafka-Pa55word"}
    }
    app.conf.workers_redis_url = "redis://user:redis-Pa55@r:6379/1"
    return app


def logged(logger: logging.Logger, caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(caplog.handler.format(r) for r in caplog.records)


def test_secrets_are_masked_in_messages_arguments_and_tracebacks(
    app: Celery, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("some.library")
    caplog.handler.addFilter(install(app, logging.getLogger("none")))  # the filter alone
    with caplog.at_level(logging.DEBUG):
        logger.debug("SaslAuthenticateRequest(auth_bytes=b'\\x00user\\x00%s')", "kafka-Pa55word")
        logger.info("connecting to redis://user:redis-Pa55@r:6379/1 and amqp://a:b@h//")
        try:
            raise ConnectionError(f"AUTH {SECRET} refused")
        except ConnectionError:
            logger.exception("broker down")

    text = logged(logger, caplog)
    for secret in ("kafka-Pa55word", "redis-Pa55", SECRET, "a:b@"):
        assert secret not in text
    assert "redis://user:***@r:6379/1" in text and "AUTH *** refused" in text


def test_install_adds_one_filter_per_handler(app: Celery) -> None:
    logger = logging.getLogger("test.logmask")
    handler = logging.StreamHandler()
    logger.addHandler(handler)
    try:
        install(app, logger)
        install(app, logger)

        assert sum(isinstance(f, MaskSecrets) for f in handler.filters) == 1
    finally:
        logger.removeHandler(handler)
