"""Session fixtures: a real redis-server and a real Kafka-protocol broker on free ports.

Every test gets a fresh topic (``test-<uuid>``) and a fresh Redis key prefix. The alarm tests'
``store`` and ``stages`` (``make_stages``) are built on them here too.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import redis
from kafka import KafkaAdminClient

from tests.integration.brokers import celery_broker  # noqa: F401 (fixture)
from tests.integration.cli_support import exporter_proc  # noqa: F401 (fixture)
from tests.integration.rabbitmq import rabbitmq_url  # noqa: F401 (fixture)
from tests.integration.redis_ha import redis_cluster, redis_sentinels  # noqa: F401 (fixtures)
from tests.integration.services import unavailable
from workers.config import Settings, load_settings
from workers.testing import RedisServer, ServiceUnavailable, TansuBroker, create_topics

if TYPE_CHECKING:
    from tests.integration.alarm_stages_support import Stages
    from workers.alarms.state import AlertStore


def _service(
    env_var: str, start: Callable[[], RedisServer | TansuBroker], address: str
) -> Iterator[str]:
    """An external service named by ``env_var``, or a local one started for the session."""
    external = os.environ.get(env_var)
    if external:
        yield external
        return
    try:
        service = start()
    except ServiceUnavailable as exc:
        unavailable(str(exc))
        return
    try:
        yield getattr(service, address)
    finally:
        service.stop()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    yield from _service("WORKERS_TEST_REDIS", lambda: RedisServer().start(), "url")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    yield from _service("WORKERS_TEST_KAFKA", lambda: TansuBroker().start(), "bootstrap")


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def key_prefix(redis_client: redis.Redis) -> Iterator[str]:
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture(scope="session")
def admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=30_000)
    yield client
    client.close()


TopicFactory = Callable[..., str]


def create_topic(admin: KafkaAdminClient, name: str, partitions: int) -> None:
    """Create a topic and wait until its metadata shows every partition."""
    create_topics(admin, {name: partitions}, timeout=20)


@pytest.fixture
def new_topic(admin: KafkaAdminClient) -> Iterator[TopicFactory]:
    """Create fresh topics named ``test-<uuid>``; deleted at teardown."""
    created: list[str] = []

    def make(partitions: int = 3, name: str | None = None) -> str:
        topic = name or f"test-{uuid.uuid4().hex[:12]}"
        create_topic(admin, topic, partitions)
        created.append(topic)
        return topic

    yield make
    if created:
        with contextlib.suppress(Exception):  # cleanup of a shared broker is best effort
            admin.delete_topics(created)


@pytest.fixture
def settings_factory(
    kafka_bootstrap: str, redis_url: str, key_prefix: str
) -> Callable[..., Settings]:
    """Settings pointing at the test services; keyword arguments override top-level keys."""

    def make(**overrides: Any) -> Settings:
        cluster = {"bootstrap_servers": [kafka_bootstrap], "request_timeout_ms": 30_000}
        conf: dict[str, Any] = {
            "workers_kafka_clusters": {"common": dict(cluster), "alert": dict(cluster)},
            "workers_redis_url": redis_url,
            "workers_redis_key_prefix": key_prefix,
        }
        conf.update(overrides)
        return load_settings(conf, environ={})

    return make


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch, kafka_bootstrap: str, redis_url: str, key_prefix: str
) -> Iterator[Any]:
    """The ``workers`` command on this test's services (see ``cli_support.Cli``)."""
    from tests.integration.cli_support import Cli, base_conf

    conf = base_conf(kafka_bootstrap, redis_url, key_prefix)
    yield Cli(monkeypatch, conf)
    broker = redis.Redis.from_url(conf["broker_url"])  # pulls' chains, queued to nobody
    for key in broker.scan_iter(match=f"*{key_prefix}*"):
        broker.delete(key)
    broker.close()


@pytest.fixture
def alert_store(redis_client: redis.Redis, key_prefix: str) -> AlertStore:
    """An ``AlertStore`` on this test's key prefix (see ``alarm_state_support``)."""
    from tests.integration.alarm_state_support import TTL
    from workers.alarms.state import AlertStore

    return AlertStore(redis_client, key_prefix, TTL)


@pytest.fixture
def make_stages(
    kafka_bootstrap: str, redis_url: str, key_prefix: str, new_topic: Callable[..., str]
) -> Iterator[Callable[..., Stages]]:
    """``make_stages(**conf)``: the alarm stages on a Celery app of this test's services, with a
    fresh output and dead-letter topic; ``conf`` adds settings (see ``alarm_stages_support``)."""
    from celery import Celery

    from tests.integration.alarm_stages_support import Stages
    from workers.connections import connections_for

    apps: list[Celery] = []

    def make(**conf: Any) -> Stages:
        topic = f"events-{key_prefix}"
        dead_letters = new_topic(1, name=f"{topic}.invalid")
        output = new_topic(3)
        app = Celery("t", set_as_current=False)
        app.conf.update(
            workers_kafka_clusters={"test": {"bootstrap_servers": [kafka_bootstrap]}},
            workers_redis_url=redis_url,
            workers_redis_key_prefix=key_prefix,
            workers_alarm_output_topic=output,
            workers_pipelines={
                "events": {
                    "cluster": "test",
                    "topic": topic,
                    "tasks": ["workers.alarms.parse", "workers.alarms.build"],
                    "dead_letter_topic": dead_letters,
                }
            },
            **conf,
        )
        apps.append(app)
        return Stages(app, topic, dead_letters, output, kafka_bootstrap)

    yield make
    for app in apps:
        connections_for(app).close()


@pytest.fixture
def stages(make_stages: Callable[..., Stages]) -> Stages:
    return make_stages()
