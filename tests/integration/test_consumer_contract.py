"""The consumer contract on a real Kafka-protocol broker (real time for record timestamps), for
each client library: kafka-python's ``KafkaConsumer`` and the librdkafka adapter
(``workers.kafka.rdkafka``), built with the same options."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer

from tests.contracts.consumer import (
    Append,
    Clock,
    ConsumerContract,
    MakeConsumer,
    MakeTopic,
    Pause,
)
from tests.integration.conftest import TopicFactory
from workers.kafka import resume_fix

# The local broker is Tansu unless WORKERS_TEST_KAFKA points at another (e.g. Apache Kafka).
ON_TANSU = not os.environ.get("WORKERS_TEST_KAFKA")

tansu_no_offset_after_last = pytest.mark.xfail(
    ON_TANSU,
    strict=True,
    reason="Tansu 0.6.0 answers ListOffsets for a time after the last record (or on an empty "
    "partition) with offset 0, timestamp -1; Kafka answers offset -1, which kafka-python "
    "returns as None",
)


def consumer_class(library: str) -> Callable[..., Any]:
    """What builds a consumer of ``library`` from kafka-python's options; the confluent one is
    skipped where confluent-kafka (the ``[confluent]`` extra) cannot be imported."""
    if library == "kafka-python":
        resume_fix.install()  # as on every consumer the package builds
        return KafkaConsumer
    pytest.importorskip("confluent_kafka", reason="confluent-kafka is not installed")
    from workers.kafka.rdkafka import rdkafka_consumer

    return rdkafka_consumer


@pytest.fixture(scope="module")
def producer(kafka_bootstrap: str) -> Iterator[KafkaProducer]:
    client = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=0, acks="all")
    yield client
    client.close(timeout=5)


class TestKafka(ConsumerContract):
    @pytest.fixture
    def now_ms(self) -> Clock:
        return lambda: int(time.time() * 1000)

    @pytest.fixture
    def pause(self) -> Pause:
        return time.sleep

    @pytest.fixture
    def make_topic(self, new_topic: TopicFactory) -> MakeTopic:
        return lambda partitions: new_topic(partitions)

    @pytest.fixture
    def append(self, producer: KafkaProducer) -> Append:
        # One record per batch (linger_ms=0 and waiting for each send): Tansu reports end
        # offsets as the first offset of the last batch + 1.
        def append(
            topic: str,
            partition: int,
            value: bytes | None,
            key: bytes | None = None,
            headers: Sequence[tuple[str, bytes]] = (),
        ) -> int:
            future = producer.send(
                topic, value=value, key=key, headers=list(headers), partition=partition
            )
            return int(future.get(timeout=30).offset)

        return append

    @pytest.fixture(params=["kafka-python", "confluent"])
    def consumer(
        self, request: pytest.FixtureRequest, kafka_bootstrap: str, new_topic: TopicFactory
    ) -> Iterator[MakeConsumer]:
        # Closed before new_topic deletes the topics: librdkafka 2.16 crashes the process when
        # a topic assigned to one of its consumers is deleted on the test broker.
        build = consumer_class(request.param)
        made: list[Any] = []

        def make() -> Any:
            client = build(
                bootstrap_servers=kafka_bootstrap,
                enable_auto_commit=False,
                group_id=None,
                auto_offset_reset="none",
            )
            made.append(client)
            return client

        yield make
        for client in made:
            client.close()

    @tansu_no_offset_after_last
    def test_offsets_for_times_after_the_last_record_is_none(
        self, make_topic: MakeTopic, append: Append, consumer: MakeConsumer, now_ms: Clock
    ) -> None:
        super().test_offsets_for_times_after_the_last_record_is_none(
            make_topic, append, consumer, now_ms
        )
