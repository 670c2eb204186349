"""The registry of a pipeline's topics and the idle check's books on a real redis-server
(``workers.state.topics``: the Lua scripts the unit tests' twins stand in for), and the idle
check against the real broker's log ends."""

from __future__ import annotations

import pytest
import redis
from kafka import KafkaConsumer

from tests.integration.cli_support import send_each
from tests.integration.conftest import TopicFactory
from workers.pulling.fanout import busy
from workers.state.keys import Space, pipeline_key
from workers.state.offsets import RedisOffsetStore
from workers.state.topics import Books, IdleProbe, TopicRegistry

pytestmark = pytest.mark.integration


def test_the_first_look_marks_topics_initial_and_later_ones_with_the_time_found(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    registry = TopicRegistry(redis_client, pipeline_key(key_prefix, "c", "g", "p"), ttl=600)

    first = registry.register(["a", "b"], 1000)
    again = registry.register(["a", "b", "c"], 2000)
    dropped = registry.register(["a", "c"], 3000)
    kept = registry.register(["c"], 4000, drop=False)

    assert (dict(first.initial), first.added, first.dropped) == ({"a": True, "b": True},
                                                                ("a", "b"), ())  # fmt: skip
    assert (again.initial["c"], again.added) == (False, ("c",))
    assert (dropped.added, dropped.dropped) == ((), ("b",))
    assert kept.dropped == () and registry.known() == {"a": "initial", "c": "2000"}
    assert 0 < redis_client.ttl(registry.key) <= 600


def test_a_pipeline_that_found_no_topic_at_first_marks_the_next_ones_as_found_later(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    registry = TopicRegistry(redis_client, pipeline_key(key_prefix, "c", "g", "p"))

    nothing = registry.register([], 1000)
    later = registry.register(["a"], 2000)

    assert (nothing.added, later.initial) == ((), {"a": False})
    assert redis_client.ttl(registry.key) == -1  # no TTL configured: kept


def test_the_books_of_many_topics_come_back_in_one_round_trip_and_say_which_are_busy(
    redis_client: redis.Redis, key_prefix: str, new_topic: TopicFactory, kafka_bootstrap: str
) -> None:
    # Arrange: three topics with offsets stored at their log end; then one of them gets a
    # record, and another a batch in flight
    names = [new_topic(2) for _ in range(3)]
    spaces = {Space(key_prefix, "test", "g", t): [0, 1] for t in names}
    quiet, written, flying = spaces
    store = RedisOffsetStore(redis_client)
    for s in spaces:
        send_each(kafka_bootstrap, s.topic, {0: 1})
        store.reset(s, {0: 1, 1: 0})
    send_each(kafka_bootstrap, written.topic, {1: 1})
    # a batch of records [1, 2) in flight, as the ledger writes it (see ledger_redis)
    redis_client.hset(flying.key("ledger", 0), mapping={"reach": "2", "b:x": "1 2 1 0 9"})
    redis_client.hset(quiet.key("ledger", 0), mapping={"reach": "1"})  # nothing in flight
    probe = IdleProbe(redis_client)
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)

    # Act
    before = redis_client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    books = probe.books(spaces)
    after = redis_client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    found = busy(probe, consumer, spaces)
    consumer.close()

    # Assert
    assert books[quiet] == {0: Books(1, 0), 1: Books(0, 0)}
    assert books[written] == {0: Books(1, 0), 1: Books(0, 0)}
    assert books[flying][0].in_flight == 1
    assert after - before == 3  # one script call per topic, in one pipeline
    assert found == {written, flying}


def test_two_pipelines_of_one_group_keep_registries_of_their_own(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    one = TopicRegistry(redis_client, pipeline_key(key_prefix, "c", "g", "one"))
    two = TopicRegistry(redis_client, pipeline_key(key_prefix, "c", "g", "two"))

    one.register(["a"], 1000)
    two.register(["b"], 1000)  # drops nothing of pipeline one's
    again = one.register(["a"], 2000)

    assert (one.known(), two.known(), again.dropped) == ({"a": "initial"}, {"b": "initial"}, ())
    assert one.looked() and not TopicRegistry(redis_client, "nothing-here").looked()
