"""The connection cache against a real redis-server and a real Kafka-protocol broker."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kafka import KafkaAdminClient, TopicPartition
from kafka.errors import KafkaError

from tests.integration.conftest import TopicFactory, create_topic
from tests.integration.services import durable_broker
from tests.unit.fakes import ManualClock
from workers.config import Settings, load_settings
from workers.connections import RETIRE_GRACE, Connections
from workers.testing import TansuBroker


def produce(cache: Connections, topic: str, value: bytes, cluster: str = "common") -> int:
    """Send one record through the cached producer; returns its offset."""
    meta = cache.producer(cluster).send(topic, value=value, partition=0).get(timeout=30)
    return int(meta.offset)


def read_all(cache: Connections, topic: str, expect: int, cluster: str = "common") -> list[bytes]:
    consumer = cache.consumer(cluster)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(values) < expect and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            values.extend(r.value for r in records)
    return values


def settings_for(bootstrap: str, redis_url: str) -> Settings:
    cluster = {"bootstrap_servers": [bootstrap], "request_timeout_ms": 30_000}
    return load_settings(
        {"workers_kafka_clusters": {"common": cluster}, "workers_redis_url": redis_url},
        environ={},
    )


def test_same_clients_within_a_process_and_they_work(
    settings_factory: Callable[..., Settings], new_topic: TopicFactory
) -> None:
    cache = Connections(settings_factory())
    topic = new_topic(1)

    produce(cache, topic, b"one")
    produce(cache, topic, b"two")

    assert cache.producer("common") is cache.producer("common")
    assert cache.consumer("common") is cache.consumer("common")
    assert cache.redis().ping()
    assert read_all(cache, topic, 2) == [b"one", b"two"]
    cache.close()


def test_forked_child_gets_new_clients_and_parent_keeps_working(
    settings_factory: Callable[..., Settings], new_topic: TopicFactory
) -> None:
    cache = Connections(settings_factory())
    topic = new_topic(1)
    parent_ids = {id(cache.producer("common")), id(cache.consumer("common")), id(cache.redis())}
    produce(cache, topic, b"before-fork")
    cache.redis().set(f"{topic}:parent", b"1")
    read_fd, write_fd = os.pipe()

    pid = os.fork()
    if pid == 0:  # child: report what it saw, never return into pytest
        report: dict[str, Any] = {}
        try:
            report["empty"] = len(cache) == 0
            ids = {id(cache.producer("common")), id(cache.consumer("common")), id(cache.redis())}
            report["fresh"] = not (ids & parent_ids)
            report["offset"] = produce(cache, topic, b"from-child")
            report["redis"] = cache.redis().get(f"{topic}:parent") == b"1"
            cache.close()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            report["error"] = repr(exc)
        os.write(write_fd, json.dumps(report).encode())
        os._exit(0)
    os.close(write_fd)
    _, status = os.waitpid(pid, 0)
    report = json.loads(os.read(read_fd, 65536) or b"{}")
    os.close(read_fd)

    assert status == 0
    assert report == {"empty": True, "fresh": True, "offset": 1, "redis": True}
    # The child closed its own clients only: the parent's are intact and still work.
    assert produce(cache, topic, b"after-fork") == 2
    assert read_all(cache, topic, 3) == [b"before-fork", b"from-child", b"after-fork"]
    assert cache.redis().get(f"{topic}:parent") == b"1"
    cache.close()


def test_clients_are_replaced_after_reconnect_seconds(
    settings_factory: Callable[..., Settings], new_topic: TopicFactory
) -> None:
    clock = ManualClock()
    cache = Connections(settings_factory(), clock=clock)
    topic = new_topic(1)
    old = cache.producer("common")
    produce(cache, topic, b"old")

    clock.advance(61)
    new = cache.producer("common")
    produce(cache, topic, b"new")

    open_in_grace = not old._closed  # another thread may still be sending on it
    clock.advance(RETIRE_GRACE)
    cache.redis()  # any later use closes it

    assert new is not old
    assert open_in_grace
    assert old._closed  # the replaced client was closed, not leaked
    assert read_all(cache, topic, 2) == [b"old", b"new"]
    cache.close()


def test_new_client_after_a_memory_broker_restart(redis_url: str) -> None:
    broker = TansuBroker().start()
    try:
        cache = Connections(settings_for(broker.bootstrap, redis_url))
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        topic = f"test-{uuid.uuid4().hex[:12]}"
        create_topic(admin, topic, 1)
        admin.close()
        old = cache.producer("common")
        produce(cache, topic, b"first-life")

        broker.stop()
        broker.start()  # same port, a new empty cluster
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        create_topic(admin, topic, 1)
        admin.close()
        with pytest.raises(KafkaError) as failure:
            # The old producer's idempotent session is gone with the old cluster.
            for _ in range(3):
                old.send(topic, value=b"stale", partition=0).get(timeout=10)
        cache.discard("producer", "common", failure.value)

        assert cache.producer("common") is not old
        assert produce(cache, topic, b"second-life") == 0
        cache.close()
    finally:
        broker.stop()


def test_durable_broker_restart_loses_nothing_and_cache_recovers(redis_url: str) -> None:
    with durable_broker() as broker:
        cache = Connections(settings_for(broker.bootstrap, redis_url))
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        topic = f"test-{uuid.uuid4().hex[:12]}"
        create_topic(admin, topic, 1)
        admin.close()
        produce(cache, topic, b"before")
        old_consumer = cache.consumer("common")

        broker.restart()
        cache.discard("consumer", "common", ConnectionError("broker restarted"))
        cache.discard("producer", "common", ConnectionError("broker restarted"))

        assert cache.consumer("common") is not old_consumer
        assert produce(cache, topic, b"after") == 1
        assert read_all(cache, topic, 2) == [b"before", b"after"]
        cache.close()


def test_sasl_and_tls_options_reach_the_real_kafka_python_clients(
    kafka_bootstrap: str, redis_url: str, tmp_path: Any
) -> None:
    # The test broker speaks neither SASL nor TLS, so this checks the hand-over, not a login:
    # with api_version given, kafka-python builds its clients without connecting.
    files = {}
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        path = tmp_path / f"{name}.pem"
        path.write_text("placeholder\n")
        files[name] = str(path)
    options = {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "alarm-worker",
        "sasl_plain_password": "s3cret-password",
        "ssl_password": "key-password",
        "ssl_check_hostname": True,
        "request_timeout_ms": 45_000,
        "client_id": "alarm-worker-1",
        **files,
    }
    cluster = {"bootstrap_servers": [kafka_bootstrap], "api_version": "2.8.0", **options}
    cluster["producer"] = {"acks": "all", "linger_ms": 7, "compression_type": "gzip"}
    cluster["consumer"] = {"max_partition_fetch_bytes": 2 << 20, "max_poll_records": 321}
    settings = load_settings(
        {"workers_kafka_clusters": {"common": cluster}, "workers_redis_url": redis_url}, environ={}
    )
    cache = Connections(settings)
    try:
        producer, consumer = cache.producer("common"), cache.consumer("common")

        for client in (producer, consumer):
            assert {k: client.config[k] for k in options} == options
            assert client.config["api_version"][:2] == (2, 8)
            assert client.config["bootstrap_servers"] == [kafka_bootstrap]
        assert (producer.config["acks"], producer.config["linger_ms"]) == (-1, 7)
        assert producer.config["compression_type"] == "gzip"
        assert consumer.config["max_partition_fetch_bytes"] == 2 << 20
        assert consumer.config["max_poll_records"] == 321
        assert consumer.config["enable_auto_commit"] is False
        assert consumer.config["group_id"] is None
        assert consumer.config["auto_offset_reset"] == "none"
    finally:
        cache.close()
