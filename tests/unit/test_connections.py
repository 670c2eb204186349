"""The connection cache's rules, on fake clients and a manual clock (no sockets)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from tests.unit.fakes import FakeFactories, ManualClock
from workers.config import Settings, load_settings
from workers.connections import RETIRE_GRACE, Connections, Factories
from workers.exceptions import RecoverableError

SECRET = "hunter2-secret"


def make_settings(**cluster: Any) -> Settings:
    conf = {
        "workers_kafka_clusters": {
            "common": {
                "bootstrap_servers": ["k1:9092", "k2:9092"],
                "reconnect_seconds": 60,
                **cluster,
            },
            "alert": {"bootstrap_servers": ["a1:9092"]},
        },
        "workers_redis_url": f"redis://:{SECRET}@r1:6379/2",
    }
    return load_settings(conf, environ={})


@pytest.fixture
def fakes() -> FakeFactories:
    return FakeFactories()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def cache(fakes: FakeFactories, clock: ManualClock) -> Connections:
    return Connections(make_settings(), clock=clock, factories=fakes.factories())


def test_nothing_is_created_until_first_use(fakes: FakeFactories) -> None:
    Connections(make_settings(), factories=fakes.factories())

    assert [fakes.producer.attempts, fakes.consumer.attempts, fakes.redis.attempts] == [0, 0, 0]


def test_same_client_within_a_process(cache: Connections) -> None:
    assert cache.producer("common") is cache.producer("common")
    assert cache.consumer("common") is cache.consumer("common")
    assert cache.redis() is cache.redis()
    assert cache.producer("common") is not cache.producer("alert")


def test_every_bootstrap_server_is_passed(cache: Connections, fakes: FakeFactories) -> None:
    cache.producer("common")
    cache.consumer("common")

    assert fakes.producer.built[0].options["bootstrap_servers"] == ["k1:9092", "k2:9092"]
    assert fakes.consumer.built[0].options["bootstrap_servers"] == ["k1:9092", "k2:9092"]


def test_consumer_is_never_shared_between_threads(cache: Connections) -> None:
    seen: list[Any] = []
    thread = threading.Thread(target=lambda: seen.append(cache.consumer("common")))

    thread.start()
    thread.join()
    mine = cache.consumer("common")

    assert seen[0] is not mine
    assert cache.producer("common") is cache.producer("common")


def test_consumer_runs_without_group_or_auto_commit(
    cache: Connections, fakes: FakeFactories
) -> None:
    cache.consumer("common")

    options = fakes.consumer.built[0].options
    assert options["group_id"] is None
    assert options["enable_auto_commit"] is False


def test_client_is_replaced_after_max_age(cache: Connections, clock: ManualClock) -> None:
    first = cache.producer("common")

    clock.advance(59)
    same = cache.producer("common")
    clock.advance(2)
    fresh = cache.producer("common")

    assert same is first
    assert fresh is not first
    assert not fresh.closed


def test_aged_producer_is_closed_only_after_a_grace_period(
    cache: Connections, clock: ManualClock
) -> None:
    first = cache.producer("common")
    clock.advance(61)
    cache.producer("common")
    open_during_grace = not first.closed

    clock.advance(RETIRE_GRACE)
    cache.consumer("common")  # any later use closes what has been retired long enough

    assert open_during_grace
    assert first.closed


def test_close_closes_retired_producers(cache: Connections, clock: ManualClock) -> None:
    first = cache.producer("common")
    clock.advance(61)
    cache.producer("common")

    cache.close()

    assert first.closed


def test_redis_client_has_no_max_age(cache: Connections, clock: ManualClock) -> None:
    first = cache.redis()
    clock.advance(10_000)

    assert cache.redis() is first


def test_discard_replaces_only_this_threads_consumer(cache: Connections) -> None:
    other: list[Any] = []
    thread = threading.Thread(target=lambda: other.append(cache.consumer("common")))
    thread.start()
    thread.join()
    mine = cache.consumer("common")

    cache.discard("consumer", "common", ConnectionError("broker went away"))

    assert mine.closed and not other[0].closed  # the other thread may be polling it now
    assert cache.consumer("common") is not mine


def test_outage_is_not_retried_in_a_tight_loop(
    cache: Connections, fakes: FakeFactories, clock: ManualClock
) -> None:
    fakes.producer.down = True

    with pytest.raises(RecoverableError):
        cache.producer("common")
    for _ in range(100):
        with pytest.raises(RecoverableError, match="next attempt in"):
            cache.producer("common")

    assert fakes.producer.attempts == 1


def test_backoff_grows_then_reconnects(
    cache: Connections, fakes: FakeFactories, clock: ManualClock
) -> None:
    fakes.producer.down = True
    with pytest.raises(RecoverableError):
        cache.producer("common")
    clock.advance(5.1)
    with pytest.raises(RecoverableError):
        cache.producer("common")  # second attempt, fails: next wait is 10 s
    clock.advance(5.1)
    with pytest.raises(RecoverableError, match="next attempt in"):
        cache.producer("common")
    fakes.producer.down = False
    clock.advance(5.0)

    client = cache.producer("common")

    assert fakes.producer.attempts == 3
    assert client is fakes.producer.built[-1]


def test_outage_is_logged_once(
    cache: Connections, fakes: FakeFactories, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    fakes.producer.down = True
    caplog.set_level(logging.DEBUG, logger="workers.connections.outages")

    for _ in range(5):
        with pytest.raises(RecoverableError):
            cache.producer("common")
        clock.advance(120)

    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert fakes.producer.attempts == 5


def test_secret_never_in_errors_or_logs(
    fakes: FakeFactories, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    cache = Connections(make_settings(), clock=clock, factories=fakes.factories())
    fakes.redis.down = True
    caplog.set_level(logging.DEBUG)

    with pytest.raises(RecoverableError) as info:
        cache.redis()

    assert SECRET not in str(info.value)
    assert SECRET not in caplog.text
    assert "***" in str(info.value)


def test_reset_after_fork_forgets_without_closing(cache: Connections) -> None:
    producer = cache.producer("common")

    cache.reset_after_fork()

    assert len(cache) == 0
    assert not producer.closed  # the parent's sockets are left alone
    assert cache.producer("common") is not producer


def test_close_closes_everything(cache: Connections) -> None:
    clients = [
        cache.producer("common"),
        cache.consumer("alert"),
        cache.admin("common"),
        cache.redis(),
    ]

    cache.close()

    assert all(c.closed for c in clients)
    assert len(cache) == 0


@pytest.mark.parametrize("role", ["producer", "consumer", "admin"])
def test_sasl_and_tls_options_reach_each_client_exactly(
    role: str, fakes: FakeFactories, tmp_path: Any
) -> None:
    ca, cert, key = (tmp_path / n for n in ("ca.pem", "cert.pem", "key.pem"))
    for path in (ca, cert, key):
        path.write_text("-----BEGIN CERTIFICATE-----\n")
    options = {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "alarm-user",
        "sasl_plain_password": SECRET,
        "ssl_cafile": str(ca),
        "ssl_certfile": str(cert),
        "ssl_keyfile": str(key),
        "ssl_password": "key-secret",
        "ssl_check_hostname": False,
        "request_timeout_ms": 40_000,
        "api_version": "2.8.0",
    }
    cache = Connections(make_settings(**options), factories=fakes.factories())

    getattr(cache, role)("common")

    built = getattr(fakes, role).built[0].options
    expected = {**options, "api_version": (2, 8, 0)}
    assert {k: built[k] for k in expected} == expected


def test_repeated_discards_back_off(cache: Connections, clock: ManualClock) -> None:
    cache.producer("common")
    cache.discard("producer", "common", ConnectionError("reset by peer"))
    cache.producer("common")  # one immediate retry

    cache.discard("producer", "common", ConnectionError("reset by peer"))

    with pytest.raises(RecoverableError, match="next attempt in"):
        cache.producer("common")
    clock.advance(10.1)
    assert cache.producer("common") is not None


def test_threads_racing_for_a_shared_client_get_the_same_one(
    fakes: FakeFactories, clock: ManualClock
) -> None:
    barrier = threading.Barrier(2)

    def slow_build(**options: Any) -> Any:
        barrier.wait(timeout=5)  # both threads are inside the factory at once
        return fakes.producer(**options)

    cache = Connections(
        make_settings(),
        clock=clock,
        factories=Factories(
            producer=slow_build, consumer=fakes.consumer, admin=fakes.admin, redis=fakes.redis
        ),
    )
    got: list[Any] = []
    threads = [threading.Thread(target=lambda: got.append(cache.producer("common"))) for _ in "ab"]

    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert got[0] is got[1]
    assert len(fakes.producer.built) == 2
    assert sum(c.closed for c in fakes.producer.built) == 1  # the loser was closed, not leaked
