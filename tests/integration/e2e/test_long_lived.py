"""End to end: long-lived consumers hand over at max runtime, restart after a crash, and stop
gracefully so that another worker takes over at once."""

from __future__ import annotations

import os
import threading
import time

import pytest
from celery import Celery
from kafka import KafkaProducer

from tests.integration.e2e.conftest import EVERY_EXECUTION, ClusterFactory
from tests.integration.e2e.harness import wait_for
from tests.integration.e2e.test_delivery import handed_off, pipeline, seen, stored, uids
from workers.state.keys import Space
from workers.state.leases import Holder, Owner, RedisLeases

pytestmark = [pytest.mark.slow, EVERY_EXECUTION]

TTL = 20.0  # long, so "at once" and "after the TTL" cannot be confused


def holders(redis_client, prefix: str, topic: str) -> dict[int, Holder]:
    leases = RedisLeases(redis_client, Owner.current("test"), ttl=1)
    return leases.holders(Space(prefix, "test", "workers", topic), range(3))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def taken_over(held: dict[int, Holder], old_pids: set[int]) -> bool:
    return len(held) == 3 and all(h.pid not in old_pids for h in held.values())


class Stream:
    """Produces uid records in the background until stopped; remembers what it sent."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=2)
        self.topic = topic
        self.sent: list[str] = []
        self.last: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            batch = uids(20)
            futures = [
                self.producer.send(self.topic, f'{{"uid": "{u}"}}'.encode(), partition=(i + k) % 3)
                for k, u in enumerate(batch)
            ]
            for future in futures:
                meta = future.get(30)
                self.last[meta.partition] = max(self.last.get(meta.partition, -1), meta.offset)
            self.sent.extend(batch)
            i += 1
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self.producer.close()


@pytest.mark.parametrize("how", ["sigterm", "control"])
def test_shutdown_commits_releases_and_hands_over_at_once(
    how: str, celery_cluster: ClusterFactory, new_topic, kafka_bootstrap: str, redis_client,
    key_prefix,
) -> None:  # fmt: skip
    topic = new_topic(3)
    config = pipeline(
        topic, mode="long_lived", concurrency=1, lease_ttl_seconds=TTL, max_seconds=2.0,
        max_runtime_seconds=40.0,
    )  # fmt: skip
    cluster = celery_cluster({"events": config})
    first = cluster.worker("first", concurrency=2, consume=True)
    cluster.beat()  # the supervisor starts the consumer
    stream = Stream(kafka_bootstrap, topic)
    try:
        wait_for(lambda: len(holders(redis_client, key_prefix, topic)) == 3, 60, "leases", cluster)
        wait_for(lambda: len(seen(redis_client, key_prefix)) > 200, 60, "records flowing", cluster)
        first_pids = {h.pid for h in holders(redis_client, key_prefix, topic).values()}
        second = cluster.worker("second", concurrency=2, consume=True)
        time.sleep(2)  # the second worker is up and idle

        if how == "sigterm":
            took = first.terminate(timeout=60)
        else:
            control = Celery(broker=cluster.env["E2E_BROKER_URL"])
            control.control.shutdown(destination=[f"first@{os.uname().nodename}"])
            assert first.proc is not None
            started = time.monotonic()
            first.proc.wait(60)
            first.stopped = True
            took = time.monotonic() - started
        after_exit = holders(redis_client, key_prefix, topic)
        wait_for(
            lambda: taken_over(holders(redis_client, key_prefix, topic), first_pids),
            TTL / 2, "the second worker to hold every partition", cluster,
        )  # fmt: skip
    finally:
        stream.stop()

    assert took < 15, f"the first worker took {took:.1f} s to stop"
    assert all(h.pid not in first_pids for h in after_exit.values())  # released, not expired
    assert "'ended_by': 'shutdown'" in first.log()
    assert second.running
    wait_for(lambda: len(seen(redis_client, key_prefix)) >= len(stream.sent), 60, "all", cluster)
    wait_for(
        lambda: stored(redis_client, key_prefix, topic)
        == {p: o + 1 for p, o in stream.last.items()},
        30, "offsets committed", cluster,
    )  # fmt: skip
    counts = handed_off(redis_client, key_prefix)
    assert set(counts) == set(stream.sent)
    # Graceful: nothing handed off twice. (A batch the stopping worker was running may still
    # run again when Celery redelivers its message; the alarm tasks dedupe by record id.)
    assert [uid for uid, n in counts.items() if n != 1] == []
    assert all(alive(h.pid) for h in holders(redis_client, key_prefix, topic).values())


def long_lived(topic: str, **overrides: object) -> dict[str, object]:
    return pipeline(
        topic, mode="long_lived", concurrency=1, max_seconds=1.0, lease_ttl_seconds=4.0,
        max_runtime_seconds=10.0, **overrides,
    )  # fmt: skip


def test_consumer_hands_over_to_a_fresh_task_at_max_runtime(
    celery_cluster: ClusterFactory, new_topic, kafka_bootstrap: str, redis_client, key_prefix
) -> None:
    topic = new_topic(3)
    cluster = celery_cluster({"events": long_lived(topic)})
    worker = cluster.worker("only", concurrency=2, consume=True)
    cluster.beat()
    stream = Stream(kafka_bootstrap, topic)
    try:
        wait_for(lambda: "'ended_by': 'max_runtime'" in worker.log(), 60, "a handover", cluster)
        after_handover = len(seen(redis_client, key_prefix))
        wait_for(
            lambda: len(seen(redis_client, key_prefix)) > after_handover + 100, 30,
            "records flowing after the handover", cluster,
        )  # fmt: skip
    finally:
        stream.stop()

    wait_for(lambda: len(seen(redis_client, key_prefix)) >= len(stream.sent), 60, "all", cluster)
    counts = handed_off(redis_client, key_prefix)
    assert set(counts) == set(stream.sent)
    assert [uid for uid, n in counts.items() if n != 1] == []  # a handover duplicates nothing
    assert "'ended_by': 'slot_busy'" not in worker.log()  # the successor found its slot pending


def test_supervisor_restarts_the_consumer_of_a_killed_worker(
    celery_cluster: ClusterFactory, new_topic, kafka_bootstrap: str, redis_client, key_prefix
) -> None:
    topic = new_topic(3)
    cluster = celery_cluster({"events": long_lived(topic)})
    first = cluster.worker("first", concurrency=2, consume=True)
    cluster.beat()
    stream = Stream(kafka_bootstrap, topic)
    try:
        wait_for(lambda: len(holders(redis_client, key_prefix, topic)) == 3, 60, "leases", cluster)
        first_pids = {h.pid for h in holders(redis_client, key_prefix, topic).values()}
        cluster.worker("second", concurrency=2, consume=True)
        time.sleep(1)

        first.kill()
        killed_at = time.monotonic()
        wait_for(
            lambda: taken_over(holders(redis_client, key_prefix, topic), first_pids), 30,
            "a new consumer on the second worker", cluster,
        )  # fmt: skip
        restarted_after = time.monotonic() - killed_at
        before = len(seen(redis_client, key_prefix))
        wait_for(
            lambda: len(seen(redis_client, key_prefix)) > before + 100, 30,
            "records flowing again", cluster,
        )  # fmt: skip
    finally:
        stream.stop()

    # The slot's TTL (4 s) plus one supervisor round (1 s) plus start-up, not the 60 s
    # visibility timeout after which the broker would redeliver the killed task.
    assert restarted_after < 15
    wait_for(lambda: len(seen(redis_client, key_prefix)) >= len(stream.sent), 60, "all", cluster)
    assert set(seen(redis_client, key_prefix)) == set(stream.sent)  # zero lost
