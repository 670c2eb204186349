"""``KafkaQueue`` against the real Redis and the real Kafka-protocol broker.

Records are put with explicit partitions so that every partition gets a known number, and a
record's value says where it must come back from. Where an end offset matters (``latest``,
``reset_offset``) records are produced one batch per record (see the notes on the test broker).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from kafka import KafkaProducer

from tests.integration.conftest import TopicFactory
from workers.config import Settings, load_settings
from workers.connections import Connections
from workers.exceptions import ConfigError, RecoverableError
from workers.kafka.queue import KafkaQueue
from workers.state.keys import Space
from workers.state.leases import Owner, RedisLeases
from workers.state.offsets import RedisOffsetStore

ROOT = Path(__file__).resolve().parents[2]
COUNTS = {0: 400, 1: 350, 2: 250}  # records put per partition in the round trips: 1,000
FIRST = {0: 0, 1: 400, 2: 750}  # the number in the value of each partition's offset 0
TTL = 2.0  # lease TTL of the restart tests: a killed process's partitions free up after it

Row = tuple[int, int, str]  # partition, offset, value


def value_at(partition: int, offset: int) -> str:
    return f"v{FIRST[partition] + offset:04d}"


@pytest.fixture
def conf(kafka_bootstrap: str, redis_url: str, key_prefix: str) -> dict[str, Any]:
    """The same settings as ``settings_factory()``, as plain data for a worker process."""
    cluster = {"bootstrap_servers": [kafka_bootstrap], "request_timeout_ms": 30_000}
    return {
        "workers_kafka_clusters": {"common": dict(cluster), "alert": dict(cluster)},
        "workers_redis_url": redis_url,
        "workers_redis_key_prefix": key_prefix,
    }


@pytest.fixture
def cache(conf: dict[str, Any]) -> Iterator[Connections]:
    cache = Connections(load_settings(conf, environ={}))
    yield cache
    cache.close()


def rows_of(records: list[Any]) -> list[Row]:
    return [(r.partition, r.offset, r.value.decode()) for r in records]


def put_round_trip_values(queue: KafkaQueue) -> int:
    """1,000 distinct values: ``COUNTS[p]`` to each partition ``p``, in three puts."""
    return sum(
        queue.put([value_at(p, o) for o in range(n)], partition=p) for p, n in COUNTS.items()
    )


def take_until(queue: KafkaQueue, total: int, count: int = 150, seconds: float = 20) -> list[Row]:
    """Take until ``total`` records came back (or time is up), then check nothing else comes."""
    rows: list[Row] = []
    deadline = time.monotonic() + seconds
    while len(rows) < total and time.monotonic() < deadline:
        rows += rows_of(queue.take_raw(count=count, timeout=1.0))
    assert queue.take_raw(count=count, timeout=0.3) == []
    return rows


def produce_one_by_one(bootstrap: str, topic: str, counts: dict[int, int]) -> None:
    """One batch per record, so that the broker's end offsets are exact."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    for p, n in counts.items():
        for o in range(n):
            producer.send(topic, value=f"p{p}-{o}".encode(), partition=p).get(timeout=30)
    producer.close()


def stored(cache: Connections, space: Space) -> dict[int, int]:
    return {p: pos.offset for p, pos in RedisOffsetStore(cache.redis()).stored(space).items()}


def holders(cache: Connections, space: Space, partitions: list[int]) -> dict[int, str]:
    observer = RedisLeases(cache.redis(), Owner.current("observer"), ttl=5)
    return {p: h.task for p, h in observer.holders(space, partitions).items()}


# -- round trips through a restart --------------------------------------------------------------


def run_worker(conf: dict[str, Any], topic: str, log: Path, then: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "tests.integration.queue_worker", "--conf", json.dumps(conf)]
    argv += ["--topic", topic, "--takes", "3", "--count", "150", "--lease-ttl", str(TTL)]
    argv += ["--log", str(log), "--then", then]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)


def await_line(proc: subprocess.Popen[str], expected: str, timeout: float = 30) -> None:
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline().strip() if readable else ""
    if line != expected:
        proc.kill()
        proc.wait(10)
        pytest.fail(f"worker printed {line!r}, expected {expected!r} (exit {proc.returncode})")


def worker_takes(log: Path) -> list[list[Row]]:
    return [[tuple(row) for row in json.loads(line)] for line in log.read_text().splitlines()]


def offsets_by_partition(rows: list[Row]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {p: [] for p in COUNTS}
    for p, o, _ in rows:
        out[p].append(o)
    return out


def prepare_round_trip(cache: Connections, topic: str) -> KafkaQueue:
    """Positions start at the tail ('latest', the origin's habit) before anything is put."""
    first = KafkaQueue(topic, connections=cache, lease_ttl=TTL)
    assert first.take(timeout=0.2) == []
    first.close()
    assert stored(cache, first.space) == {0: 0, 1: 0, 2: 0}
    assert put_round_trip_values(first) == 1000
    return first


def test_round_trip_through_takes_and_a_process_restart(
    cache: Connections, new_topic: TopicFactory, conf: dict[str, Any], tmp_path: Path
) -> None:
    topic = new_topic(3)
    first = prepare_round_trip(cache, topic)
    proc = run_worker(conf, topic, tmp_path / "worker.jsonl", "close")
    await_line(proc, "closed")
    assert proc.wait(10) == 0
    before = worker_takes(tmp_path / "worker.jsonl")
    assert stored(cache, first.space) == offsets_after(before)
    second = KafkaQueue(topic, connections=cache, lease_ttl=TTL)

    after = take_until(second, 550)
    second.close()

    assert [len(take) for take in before] == [150, 150, 150]
    rows = [row for take in before for row in take] + after
    assert sorted(v for _, _, v in rows) == [f"v{i:04d}" for i in range(1000)]  # each once
    assert offsets_by_partition(rows) == {p: list(range(n)) for p, n in COUNTS.items()}
    assert all(v == value_at(p, o) for p, o, v in rows)
    assert stored(cache, first.space) == COUNTS


def offsets_after(takes: list[list[Row]]) -> dict[int, int]:
    """The next offset per partition after ``takes`` (0 where they read nothing)."""
    nexts = dict.fromkeys(COUNTS, 0)
    for p, o, _ in (row for take in takes for row in take):
        nexts[p] = max(nexts[p], o + 1)
    return nexts


def test_a_killed_process_gives_back_only_its_uncommitted_take(
    cache: Connections, new_topic: TopicFactory, conf: dict[str, Any], tmp_path: Path
) -> None:
    topic = new_topic(3)
    first = prepare_round_trip(cache, topic)
    proc = run_worker(conf, topic, tmp_path / "worker.jsonl", "hang")
    await_line(proc, "taken")
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL
    before = worker_takes(tmp_path / "worker.jsonl")
    committed = offsets_after(before[:2])  # take 3 committed takes 1 and 2, nothing after
    assert stored(cache, first.space) == committed
    second = KafkaQueue(topic, connections=cache, lease_ttl=TTL)

    after = take_until(second, 1000 - 300)  # waits for the dead process's leases to expire
    second.close()

    assert [len(take) for take in before] == [150, 150, 150]
    again = {v for _, _, v in after} & {v for take in before for _, _, v in take}
    assert again == {v for _, _, v in before[2]}
    assert len(after) == len({v for _, _, v in after}) == 700
    assert sorted({v for take in before for _, _, v in take} | {v for _, _, v in after}) == [
        f"v{i:04d}" for i in range(1000)
    ]
    assert offsets_by_partition([r for take in before for r in take]) == {
        p: list(range(offsets_after(before)[p])) for p in COUNTS
    }
    assert offsets_by_partition(after) == {p: list(range(committed[p], COUNTS[p])) for p in COUNTS}
    assert all(v == value_at(p, o) for p, o, v in after)


# -- competition ----------------------------------------------------------------------------------


def test_two_queues_taking_at_once_never_get_the_same_record(
    cache: Connections, new_topic: TopicFactory
) -> None:
    topic = new_topic(3)
    producer = KafkaQueue(topic, connections=cache)
    for p in COUNTS:
        producer.put([f"{p}-{o}" for o in range(200)], partition=p)
    got: dict[str, list[Row]] = {"a": [], "b": []}
    errors: list[BaseException] = []
    start = threading.Barrier(2)
    lock = threading.Lock()

    def take_all(name: str) -> None:
        queue = KafkaQueue(topic, connections=cache, start="earliest", lease_ttl=5)
        try:
            # Join the topic's owners before the race: while both are members, neither may
            # hold more than 2 of the 3 partitions, so both must get records.
            first = rows_of(queue.take_raw(count=1, timeout=0.0))
            with lock:
                got[name] += first
            start.wait(10)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                rows = rows_of(queue.take_raw(count=10, timeout=0.2))
                with lock:
                    got[name] += rows
                    if len(got["a"]) + len(got["b"]) >= 600:
                        break
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)
        finally:
            queue.close()

    threads = [threading.Thread(target=take_all, args=(name,)) for name in got]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    values_a, values_b = [v for _, _, v in got["a"]], [v for _, _, v in got["b"]]
    assert set(values_a).isdisjoint(values_b)
    assert sorted(values_a + values_b) == sorted(f"{p}-{o}" for p in COUNTS for o in range(200))
    assert len(values_a) > 0 and len(values_b) > 0, (len(values_a), len(values_b))
    for rows in got.values():
        for p in COUNTS:
            offsets = [o for q, o, _ in rows if q == p]
            assert offsets == sorted(set(offsets))
    assert stored(cache, producer.space) == dict.fromkeys(COUNTS, 200)  # same topic and group


# -- reset_offset ---------------------------------------------------------------------------------


def test_reset_offset_per_partition_forced_and_near_the_tail(
    cache: Connections, new_topic: TopicFactory, kafka_bootstrap: str, caplog: Any
) -> None:
    topic = new_topic(3)
    produce_one_by_one(kafka_bootstrap, topic, {0: 10, 1: 3})  # partition 2 stays empty
    queue = KafkaQueue(topic, connections=cache, lease_ttl=5)
    operator = KafkaQueue(topic, connections=cache, lease_ttl=5)
    fresh = KafkaQueue(topic, "fresh-", connections=cache, lease_ttl=5)

    with caplog.at_level(logging.WARNING):
        forced = queue.reset_offset(force_offset=7)
    clamps = [r.getMessage() for r in caplog.records if "outside the log" in r.getMessage()]
    after_forced = stored(cache, queue.space)
    read_from_7 = rows_of(queue.take_raw(count=100, timeout=0.5))
    operator.reset_offset(force_offset=1)  # while the take above is not committed
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        refused = queue.commit()
    refusal = caplog.text
    read_from_1 = rows_of(queue.take_raw(count=100, timeout=0.5))
    operator.reset_offset(force_offset=1)
    near_tail = operator.reset_offset()
    fresh_tail = fresh.reset_offset()
    read_fresh = rows_of(fresh.take_raw(count=100, timeout=0.5))

    assert forced == {0: 7, 1: 3, 2: 0}
    assert clamps == [
        f"common/workers/{topic} partition 1: offset 7 is outside the log [0, 3]; reset to 3",
        f"common/workers/{topic} partition 2: offset 7 is outside the log [0, 0]; reset to 0",
    ]
    assert after_forced == {0: 7, 1: 3, 2: 0}
    assert [(p, o) for p, o, _ in read_from_7] == [(0, 7), (0, 8), (0, 9)]
    assert refused == {}
    assert "commit refused {0: 'reset'}" in refusal
    assert [(p, o) for p, o, _ in read_from_1] == [(0, o) for o in range(1, 10)] + [(1, 1), (1, 2)]
    assert near_tail == {0: 5, 1: 1, 2: 0}  # max(stored, end - 5) per partition
    assert fresh_tail == {0: 5, 1: 0, 2: 0}  # nothing stored: max(log start, end - 5)
    assert [(p, o, v) for p, o, v in read_fresh] == [(0, o, f"p0-{o}") for o in range(5, 10)] + [
        (1, o, f"p1-{o}") for o in range(3)
    ]
    with pytest.raises(ValueError, match="force_offset must be >= 0, or -1; got -2"):
        queue.reset_offset(force_offset=-2)
    for q in (queue, operator, fresh):
        q.close()


# -- put ------------------------------------------------------------------------------------------


def test_put_checks_types_encodes_text_and_sends_nothing_on_a_bad_item(
    cache: Connections, new_topic: TopicFactory
) -> None:
    topic = new_topic(1)
    queue = KafkaQueue(connections=cache, start="earliest", lease_ttl=5)

    with pytest.raises(ValueError, match="has no topic"):
        queue.put(b"x")
    queue.set_topic(topic)
    with pytest.raises(
        TypeError, match="put\\(\\) takes bytes, str or a list of them; the value is int"
    ):
        queue.put(123)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="item 2 of the list is dict"):
        queue.put([b"a", "b", {}])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="the value is bytearray"):
        queue.put(bytearray(b"x"))  # type: ignore[arg-type]
    sent = [queue.put("héllo"), queue.put([b"raw", "text"]), queue.put([])]
    values = queue.take(count=10, timeout=1.0)

    assert sent == [1, 2, 0]
    assert values == ["héllo".encode(), b"raw", b"text"]  # "a" and "b" were never sent


def test_put_refuses_a_record_too_large_sends_the_others_and_says_how_many_failed(
    cache: Connections, new_topic: TopicFactory
) -> None:
    topic = new_topic(1)
    queue = KafkaQueue(topic, connections=cache, start="earliest", lease_ttl=5)

    with pytest.raises(RecoverableError) as failed:
        queue.put([b"first", b"x" * 2_000_000, b"last"])  # over max_request_size (1 MB)

    assert str(failed.value).startswith(
        f"put to {topic!r}: 1 of 3 records not sent (1 refused before sending, 0 failed after "
        "the client's retries, 0 unconfirmed after its delivery timeout); first error: "
        "MessageSizeTooLargeError"
    )
    assert queue.take(count=10, timeout=1.0) == [b"first", b"last"]  # each once: no re-send
    queue.close()


# -- configuration --------------------------------------------------------------------------------


def test_kfk_conf_names_a_configured_cluster_or_is_refused(
    settings_factory: Callable[..., Settings], kafka_bootstrap: str
) -> None:
    host, port = kafka_bootstrap.rsplit(":", 1)
    settings = settings_factory(
        workers_kafka_clusters={
            "common": {"bootstrap_servers": [kafka_bootstrap]},
            "alert": {"bootstrap_servers": ["alert-kafka:9093"], "reconnect_seconds": 42},
        }
    )
    connections = Connections(settings)

    def cluster_of(kfk_conf: dict[str, Any] | None) -> str:
        return KafkaQueue(kfk_conf=kfk_conf, connections=connections).cluster

    assert cluster_of(None) == "common"
    assert cluster_of({"cluster": "alert"}) == "alert"
    assert cluster_of({"cluster_index": 0, "domain": host, "port": int(port)}) == "common"
    assert cluster_of({"cluster_index": 0, "domain": "ALERT-KAFKA", "port": "9093"}) == "alert"
    assert KafkaQueue.get_alert_kafka_queue(connections=connections).cluster == "alert"
    assert KafkaQueue.get_common_kafka_queue(connections=connections).cluster == "common"
    alert = KafkaQueue.get_alert_kafka_queue(connections=connections)
    assert (alert.reconnect_seconds, KafkaQueue(connections=connections).reconnect_seconds) == (
        42.0,
        60.0,
    )
    with pytest.raises(AttributeError):
        alert.reconnect_seconds = 5  # type: ignore[misc]
    with pytest.raises(ConfigError) as unknown:
        cluster_of({"domain": "nowhere", "port": 1, "sasl_plain_password": "hunter2"})
    with pytest.raises(ConfigError, match="kfk_conf: got {'cluster': 'nope'}"):
        cluster_of({"cluster": "nope"})

    message = str(unknown.value)
    assert message.startswith(
        "kfk_conf: got {'domain': 'nowhere', 'port': 1, 'sasl_plain_password': '***'}; expected"
    )
    assert f"common ({kafka_bootstrap}); alert (alert-kafka:9093)" in message
    assert "hunter2" not in message


def test_an_app_gives_settings_and_the_origin_group_name(
    kafka_bootstrap: str, redis_url: str, key_prefix: str
) -> None:
    app = Celery("queue-test", set_as_current=False)
    app.conf.update(
        workers_kafka_clusters={"common": {"bootstrap_servers": [kafka_bootstrap]}},
        workers_redis_url=redis_url,
        workers_redis_key_prefix=key_prefix,
        workers_default_group="legacy",
    )

    plain = KafkaQueue.get_common_kafka_queue(app=app)
    prefixed = KafkaQueue("t", "blue-", app=app)
    prefixed.set_topic("", group_prefix="green-")

    assert (plain.cluster, plain.group_name) == ("common", "legacy")
    assert (prefixed.topic, prefixed.group_name) == ("t", "green-legacy")


def test_the_default_app_is_imported_only_when_a_queue_is_made() -> None:
    code = (
        "import sys\n"
        "import workers.kafka.queue\n"
        "before = 'workers.app' in sys.modules\n"
        "q = workers.kafka.queue.KafkaQueue(topic='t', group_prefix='p-')\n"
        "print(before, 'workers.app' in sys.modules, q.cluster, q.group_name, "
        "q.reconnect_seconds)\n"
    )
    env = {**os.environ, "KAFKA_CONSUMER_GROUP": "legacy-group"}
    env["WORKERS_KAFKA_COMMON_RECONNECT_SECONDS"] = "33"
    env.pop("WORKERS_CELERY_CONFIG", None)

    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )

    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True", "common", "p-legacy-group", "33.0"]


# -- redis_offset=False, set_topic, close ---------------------------------------------------------


def test_redis_offset_false_keeps_positions_in_the_instance_only(
    cache: Connections, new_topic: TopicFactory, redis_client: redis.Redis, key_prefix: str
) -> None:
    topic = new_topic(2)
    mine = KafkaQueue(topic, redis_offset=False, connections=cache, start="earliest")
    mine.put([b"a0", b"a1", b"a2"], partition=0)
    mine.put([b"b0", b"b1"], partition=1)

    first = rows_of(mine.take_raw(count=10, timeout=1.0))
    committed = mine.commit()
    nothing = mine.take(timeout=0.2)
    reset = mine.reset_offset(force_offset=1)
    from_1 = rows_of(mine.take_raw(count=10, timeout=0.5))
    other = KafkaQueue(topic, redis_offset=False, connections=cache, start="earliest")
    others = rows_of(other.take_raw(count=10, timeout=1.0))
    mine.close()
    other.close()

    assert [(p, o) for p, o, _ in first] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    assert committed == {0: 3, 1: 2}
    assert nothing == []
    assert reset == {0: 1, 1: 1}
    assert [(p, o, v) for p, o, v in from_1] == [(0, 1, "a1"), (0, 2, "a2"), (1, 1, "b1")]
    assert others == first  # no coordination: another instance reads everything again
    assert list(redis_client.scan_iter(match=f"{key_prefix}*")) == []


def test_set_topic_commits_what_was_taken_and_releases_the_leases(
    cache: Connections, new_topic: TopicFactory
) -> None:
    first, second = new_topic(2), new_topic(1)
    queue = KafkaQueue(first, connections=cache, start="earliest", lease_ttl=5)
    queue.put([b"a0", b"a1", b"a2"], partition=0)
    queue.put(b"b0", topic=second)

    taken = queue.take(count=2, timeout=2.0)
    space = queue.space
    held_before = holders(cache, space, [0, 1])
    queue.set_topic(second)
    from_second = queue.take(count=5, timeout=0.5)
    second_space = queue.space
    queue.set_topic("", group_prefix="x-")

    assert taken == [b"a0", b"a1"]
    assert held_before == {0: "KafkaQueue", 1: "KafkaQueue"}
    assert stored(cache, space) == {0: 2, 1: 0}
    assert holders(cache, space, [0, 1]) == {}
    assert cache.redis().zcard(space.key("members")) == 0
    assert from_second == [b"b0"]
    assert (queue.topic, queue.group_name) == (second, "x-workers")
    assert stored(cache, second_space) == {0: 1}
    assert holders(cache, second_space, [0]) == {}
    queue.close()


def test_a_with_block_commits_on_success_only_and_close_is_idempotent(
    cache: Connections, new_topic: TopicFactory
) -> None:
    topic = new_topic(1)
    KafkaQueue(topic, connections=cache).put([b"r0", b"r1", b"r2", b"r3"])

    def queue() -> KafkaQueue:
        return KafkaQueue(topic, connections=cache, start="earliest", lease_ttl=5)

    with queue() as q:
        first = q.take(count=2, timeout=2.0)
    space = q.space
    after_success = stored(cache, space)
    q.close()
    with pytest.raises(RuntimeError), queue() as q:
        second = q.take(count=2, timeout=2.0)
        raise RuntimeError("processing failed")
    after_failure = stored(cache, space)
    with queue() as q:
        third = q.take(count=10, timeout=0.5)

    assert first == [b"r0", b"r1"]
    assert after_success == {0: 2}
    assert second == [b"r2", b"r3"]
    assert after_failure == {0: 2}  # the failed block's take was not committed
    assert third == [b"r2", b"r3"]
    assert holders(cache, space, [0]) == {}
    assert stored(cache, space) == {0: 4}


def test_a_dropped_queue_does_no_network_io(
    cache: Connections, new_topic: TopicFactory, caplog: Any
) -> None:
    topic = new_topic(1)
    queue = KafkaQueue(topic, connections=cache, start="earliest", lease_ttl=5)
    queue.put([b"r0", b"r1"])
    assert queue.take(count=1, timeout=2.0) == [b"r0"]
    space = queue.space

    with caplog.at_level(logging.WARNING):
        del queue
        gc.collect()

    assert "dropped without close()" in caplog.text
    assert holders(cache, space, [0]) == {0: "KafkaQueue"}  # not released: it expires
    assert stored(cache, space) == {0: 0}  # not committed: r0 will be read again


def test_close_after_the_cache_replaced_the_consumer_still_commits(
    cache: Connections, new_topic: TopicFactory
) -> None:
    topic = new_topic(1)
    queue = KafkaQueue(topic, connections=cache, start="earliest", lease_ttl=5)
    queue.put([b"r0", b"r1", b"r2"])
    taken = queue.take(count=2, timeout=2.0)
    space = queue.space

    cache.discard("consumer", "common")  # as after a broker error, or at reconnect_seconds
    queue.close()
    queue.close()
    after_close = stored(cache, space)
    with KafkaQueue(topic, connections=cache, lease_ttl=5) as later:
        rest = later.take(count=5, timeout=0.5)

    assert taken == [b"r0", b"r1"]
    assert after_close == {0: 2}
    assert rest == [b"r2"]
    assert stored(cache, space) == {0: 3}
