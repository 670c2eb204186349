"""The pull on the real broker and the real Redis with each client library of a cluster
(``client_library``: kafka-python, the default, and confluent): the same deliveries, pauses at
``max_in_flight``, re-reads of lost batches, repairs of positions outside the log and dead
letters, through the consumers and producers the connection cache builds.

Written to hold on the test broker and on Apache Kafka alike (``WORKERS_TEST_KAFKA``): records
are produced one batch per record where an end offset matters. The test broker never answers
a fetch with "offset out of range" (see the notes on it), so here a position outside the log is
found when positions are prepared; the fetch error's path is covered by the unit tests on a
twin of librdkafka (``tests/unit/test_puller_confluent.py``).

Every client is closed before its test's topics are deleted: librdkafka 2.16 crashes the
process (SIGSEGV in its metadata cache) when a topic assigned to one of its consumers is
deleted on the test broker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from kafka import TopicPartition

from tests.integration.conftest import TopicFactory
from tests.unit.fakes import RecordingDispatcher
from workers.config import PipelineConfig, Settings, StartPolicy
from workers.connections import Connections, connections_for
from workers.kafka.deadletter import DeadLetters
from workers.pulling.engine import pulling, run_cycle
from workers.pulling.puller import Puller
from workers.state.keys import Space
from workers.state.leases import Owner, RedisLeases
from workers.state.ledger_redis import RedisLedger
from workers.state.offsets import RedisOffsetStore

LIBRARIES = ["kafka-python", "confluent"]
# The local broker is Tansu unless WORKERS_TEST_KAFKA points at another (e.g. Apache Kafka).
ON_TANSU = not os.environ.get("WORKERS_TEST_KAFKA")


@pytest.fixture(params=LIBRARIES)
def library(request: pytest.FixtureRequest) -> str:
    if request.param == "confluent":
        pytest.importorskip("confluent_kafka", reason="confluent-kafka is not installed")
    return str(request.param)


def cluster_conf(kafka_bootstrap: str, library: str) -> dict[str, Any]:
    return {
        "bootstrap_servers": [kafka_bootstrap],
        "request_timeout_ms": 30_000,
        "client_library": library,
    }


@dataclass
class Rig:
    """A topic of 3 partitions and pullers on real services, with one client library."""

    cache: Connections
    client: redis.Redis
    space: Space
    store: RedisOffsetStore
    ledger: RedisLedger
    dead_letters: str
    config: PipelineConfig

    def produce(self, counts: dict[int, int], value: Callable[[int, int], bytes]) -> None:
        """One batch per record (their end offsets matter), with the cluster's own producer."""
        producer = self.cache.producer("common")
        for p, n in counts.items():
            for i in range(n):
                producer.send(self.space.topic, value=value(p, i), partition=p).get(30)

    def puller(
        self, dispatcher: RecordingDispatcher, budget: float = 60.0, **changes: Any
    ) -> Puller:
        return Puller(
            replace(self.config, **changes),
            space=self.space,
            store=self.store,
            leases=RedisLeases(self.client, Owner("h", 1), 30.0, token="owner-a"),
            ledger=self.ledger,
            consumer=self.cache.consumer("common"),
            dispatcher=dispatcher,
            dead_letters=DeadLetters(
                lambda: self.cache.producer("common"), "common", self.dead_letters, timeout=30
            ),
            budget=budget,
        )

    def cycle(self, dispatcher: RecordingDispatcher, budget: float = 60.0, **changes: Any) -> Any:
        puller = self.puller(dispatcher, budget, **changes)
        try:
            return puller.cycle()
        finally:
            puller.release()

    def stored(self) -> dict[int, int | None]:
        return {p: pos.offset for p, pos in self.store.stored(self.space).items()}

    def letters(self, expected: int) -> list[Any]:
        """The dead letters, read with the cluster's consumer (30 s at most)."""
        consumer = self.cache.consumer("common")
        dlq = TopicPartition(self.dead_letters, 0)
        consumer.assign([dlq])
        consumer.seek(dlq, 0)
        found: list[Any] = []
        for _ in range(60):
            found += consumer.poll(timeout_ms=500).get(dlq, [])
            if len(found) >= expected:
                break
        return found


def json_value(p: int, i: int) -> bytes:
    return b'{"p": %d, "i": %d}' % (p, i)


@pytest.fixture
def rig(
    settings_factory: Callable[..., Settings],
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    key_prefix: str,
    library: str,
) -> Iterator[Rig]:
    topic = new_topic(3)
    dead_letters = new_topic(1, name=f"{topic}.dlq")
    settings = settings_factory(
        workers_kafka_clusters={"common": cluster_conf(kafka_bootstrap, library)}
    )
    assert settings.cluster("common").client_library == library
    cache = Connections(settings)
    client = cache.redis()
    space = Space(key_prefix, "common", "g", topic)
    config = PipelineConfig(
        name="p", cluster="common", topic=topic, group="g", tasks=("t",), batch_size=4,
        start=StartPolicy("earliest"), max_seconds=10.0, dead_letter_topic=dead_letters,
    )  # fmt: skip
    yield Rig(
        cache, client, space, RedisOffsetStore(client), RedisLedger(client), dead_letters, config
    )
    cache.close()


def by_partition(dispatcher: RecordingDispatcher) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for p, offset in dispatcher.delivered:
        out.setdefault(p, []).append(offset)
    return out


def test_the_cache_builds_the_clusters_library(rig: Rig, library: str) -> None:
    consumer, producer = rig.cache.consumer("common"), rig.cache.producer("common")

    names = (type(consumer).__name__, type(producer).__name__)

    expected = ("RdKafkaConsumer", "RdKafkaProducer") if library == "confluent" else None
    assert names == (expected or ("KafkaConsumer", "KafkaProducer"))


def test_every_record_of_every_partition_is_delivered_once_in_order(rig: Rig) -> None:
    counts = {0: 9, 1: 4, 2: 6}
    rig.produce(counts, json_value)
    dispatcher = RecordingDispatcher(ledger=rig.ledger)

    summary = rig.cycle(dispatcher)

    assert by_partition(dispatcher) == {p: list(range(n)) for p, n in counts.items()}
    assert (summary.records, summary.stopped_by) == (19, "caught_up")
    assert rig.stored() == counts
    first = dispatcher.batches[0][0]
    assert first["value"] in ({"p": 0, "i": 0}, {"p": 1, "i": 0}, {"p": 2, "i": 0})


def test_a_partition_paused_at_max_in_flight_resumes_where_it_stopped(rig: Rig) -> None:
    rig.produce({0: 12, 1: 2}, json_value)
    dispatcher = RecordingDispatcher(ledger=rig.ledger, finish=False)

    first = rig.cycle(dispatcher, batch_size=2, max_in_flight=2)
    held = by_partition(dispatcher).get(0, [])
    cycles = []
    for _ in range(5):  # each cycle, once the batches in flight finished, reads two more
        dispatcher.finish_all()
        cycles.append(rig.cycle(dispatcher, batch_size=2, max_in_flight=2))
    dispatcher.finish_all()

    assert held == [0, 1, 2, 3]  # two batches of 2, then partition 0 was paused
    assert first.reached[1] == 2  # partition 1 went on
    assert by_partition(dispatcher) == {0: list(range(12)), 1: [0, 1]}
    assert rig.stored() == {0: 12, 1: 2, 2: 0}
    assert cycles[-1].records == 0


def test_a_lost_batch_is_read_again_and_handed_off_when_due(rig: Rig) -> None:
    rig.produce({0: 4}, json_value)
    dispatcher = RecordingDispatcher(ledger=rig.ledger, finish=False)
    rig.cycle(dispatcher, budget=1.0, batch_size=2)
    dispatcher.finish_batch(1)  # the first batch was lost
    rig.produce({0: 2}, json_value)
    time.sleep(1.5)  # the lost batch is due (the ledger's clock is Redis's)

    late = rig.cycle(dispatcher, budget=1.0, batch_size=2)
    dispatcher.finish_all()

    assert late.redriven == 1
    assert dispatcher.tickets[2].slices == dispatcher.tickets[0].slices  # read again first
    assert by_partition(dispatcher) == {0: [0, 1, 2, 3, 0, 1, 4, 5]}
    assert rig.stored()[0] == 6


@pytest.mark.skipif(
    ON_TANSU, reason="the test broker never answers a fetch with 'offset out of range'"
)
def test_a_position_past_the_log_end_is_repaired_by_policy(rig: Rig) -> None:
    rig.produce({0: 5}, json_value)
    rig.store.reset(rig.space, {0: 1000})  # an operator's mistake: past the end
    dispatcher = RecordingDispatcher(ledger=rig.ledger)

    rig.cycle(dispatcher)

    assert by_partition(dispatcher) == {0: [0, 1, 2, 3, 4]}  # out_of_range: earliest
    assert rig.stored()[0] == 5


def test_a_bad_record_is_dead_lettered_through_the_clusters_producer(rig: Rig) -> None:
    rig.produce({0: 3}, lambda p, i: b"not json" if i == 1 else json_value(p, i))
    dispatcher = RecordingDispatcher(ledger=rig.ledger)

    rig.cycle(dispatcher)
    [letter] = rig.letters(1)

    assert by_partition(dispatcher) == {0: [0, 2]}
    headers = dict(letter.headers)
    assert (letter.value, headers["workers.offset"]) == (b"not json", b"1")
    assert rig.stored()[0] == 3


def test_a_dead_letter_too_large_for_the_producer_goes_without_its_value(
    rig: Rig, settings_factory: Callable[..., Settings], kafka_bootstrap: str, library: str
) -> None:
    rig.produce({0: 1}, lambda p, i: b"x" * 5000)  # not JSON, and over the limit below
    conf = {**cluster_conf(kafka_bootstrap, library), "producer": {"max_request_size": 1000}}
    tight = Connections(settings_factory(workers_kafka_clusters={"common": conf}))
    try:
        rig_tight = replace(rig, cache=tight)
        rig_tight.cycle(RecordingDispatcher(ledger=rig.ledger))
    finally:
        tight.close()

    [letter] = rig.letters(1)
    headers = dict(letter.headers)
    assert (letter.value, headers["workers.value_dropped"]) == (b"", b"5000")
    assert rig.stored()[0] == 1


def test_the_engine_hands_every_record_to_the_celery_broker(
    rig: Rig, kafka_bootstrap: str, redis_url: str, key_prefix: str, library: str
) -> None:
    counts = {0: 7, 1: 3, 2: 5}
    rig.produce(counts, json_value)
    app = Celery("pull-confluent", set_as_current=False)
    app.conf.update(
        broker_url=redis_url.rsplit("/", 1)[0] + "/2",
        workers_kafka_clusters={"common": cluster_conf(kafka_bootstrap, library)},
        workers_redis_url=redis_url,
        workers_redis_key_prefix=key_prefix,
        workers_pipelines={
            "p": {
                "cluster": "common", "topic": rig.space.topic, "tasks": ["t.one"],
                "start": "earliest", "redrive_seconds": 600, "batch_size": 5,
                "queue": f"{key_prefix}-q",
            }
        },
    )  # fmt: skip
    try:
        with pulling(app, "p", task="test") as puller:
            summary = run_cycle(app, puller)
        waiting = redis.Redis.from_url(app.conf.broker_url).llen(f"{key_prefix}-q")
    finally:
        connections_for(app).close()  # before the topic is deleted (see the module)
        redis.Redis.from_url(app.conf.broker_url).delete(f"{key_prefix}-q")
        app.close()

    assert (summary.records, summary.reached) == (15, counts)
    assert waiting == summary.batches >= 3  # a chain per batch of at most 5


def test_a_forked_child_exits_and_leaves_the_parents_consumer_alone(
    rig: Rig, kafka_bootstrap: str, library: str
) -> None:
    rig.produce({0: 3}, json_value)

    # The child exits through the interpreter's shutdown, which frees what it inherited.
    done = subprocess.run(
        [sys.executable, "-c", _FORK, kafka_bootstrap, rig.space.topic, library],
        timeout=120, capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["child-exited", "offsets", "0,1,2"]


ROOT = Path(__file__).resolve().parents[2]
# Reads a record, forks, and reads on in the parent once the child has exited (an inherited
# librdkafka handle destroyed in the child waits for threads that are not there).
_FORK = """
import os, sys, time
from kafka import TopicPartition
from workers.config import load_settings
from workers.connections import Connections
bootstrap, topic, library = sys.argv[1:]
conf = {"workers_kafka_clusters": {"c": {"bootstrap_servers": [bootstrap],
                                          "client_library": library}}}
cache = Connections(load_settings(conf, environ={}))
consumer, tp = cache.consumer("c"), TopicPartition(topic, 0)
consumer.assign([tp])
consumer.seek(tp, 0)
got = []
while not got:
    got += consumer.poll(timeout_ms=500, max_records=1).get(tp, [])
pid = os.fork()
if pid == 0:
    sys.exit(0)
deadline = time.monotonic() + 30
while os.waitpid(pid, os.WNOHANG) == (0, 0):
    if time.monotonic() > deadline:
        os.kill(pid, 9)
        sys.exit("the child did not exit")
    time.sleep(0.05)
print("child-exited")
while len(got) < 3 and time.monotonic() < deadline:
    got += consumer.poll(timeout_ms=500).get(tp, [])
print("offsets", ",".join(str(r.offset) for r in got))
cache.close()
"""
