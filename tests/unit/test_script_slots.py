"""Every Lua script call of the package passes keys of one hash slot (Redis Cluster refuses
any other), computed with redis-py's ``key_slot``: each store that runs scripts is driven
through every method that calls one, with several partitions, topics and fingerprints, on a
recording client; and every script a store registers is called at least once here, so a new
script cannot go unchecked."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
import redis

from workers.alarms.state import AlertStore
from workers.exceptions import RecoverableError
from workers.state.brake import PULL, Limits, Tally
from workers.state.brake_redis import RedisBrake
from workers.state.keys import Space
from workers.state.leases import Lease, Owner, RedisLeases
from workers.state.ledger import Fence, InFlight, Slice
from workers.state.ledger_redis import RedisLedger
from workers.state.offsets import Checkpoint, RedisOffsetStore
from workers.state.scripting import slot
from workers.state.slots import Slots
from workers.state.topics import IdleProbe, TopicRegistry

FINGERPRINTS = [f"{i:040x}" for i in range(1, 40)]


class Recorder:
    """A client that records each script call (its text and keys) and then fails like a lost
    connection, as does every other command: a method stops at its first round trip, after
    the script calls it queued in a pipeline. The sweep's read of the index answers, so that
    the sweep reaches its scripts."""

    def __init__(self) -> None:
        self.registered: set[str] = set()
        self.calls: list[tuple[str, list[str]]] = []

    def register_script(self, text: str) -> Callable[..., Any]:
        self.registered.add(text)

        def call(keys: Sequence[str] = (), args: Sequence[Any] = (), client: Any = None) -> Any:
            self.calls.append((text, [str(k) for k in keys]))
            if isinstance(client, Pipe):
                return client
            raise redis.ConnectionError("recorded")

        return call

    def pipeline(self, transaction: bool = True) -> Pipe:
        return Pipe(self)

    def zrangebyscore(self, *args: Any, **kwargs: Any) -> list[bytes]:
        return [fp.encode() for fp in FINGERPRINTS]

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise redis.ConnectionError(f"{name}: recorded")

        return fail


class Pipe:
    """A pipeline of ``Recorder``: queues anything (a short ``eval`` is recorded too) and
    fails at ``execute``."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def eval(self, text: str, numkeys: int, *keys_and_args: Any) -> Pipe:
        self.recorder.calls.append((text, [str(k) for k in keys_and_args[:numkeys]]))
        return self

    def execute(self) -> Any:
        raise redis.ConnectionError("recorded")

    def __enter__(self) -> Pipe:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self


def spanning(calls: Sequence[tuple[str, list[str]]]) -> list[tuple[str, list[str]]]:
    """The calls whose keys lie in more than one hash slot."""
    return [(text, keys) for text, keys in calls if len({slot(k) for k in keys}) > 1]


def drive(action: Callable[[], object]) -> None:
    """Run one store method until the recorder's lost connection ends it."""
    with pytest.raises((RecoverableError, redis.ConnectionError)):
        action()


def changes(quiet: bool) -> list[dict[str, Any]]:
    return [
        {"change_id": f"a{i}:2", "change": "closed",
         "alert": {"fingerprint": fp, "id": f"a{i}", "version": 2,
                   "closed_by": "quiet" if quiet else None}}
        for i, fp in enumerate(FINGERPRINTS)
    ]  # fmt: skip


def events() -> list[dict[str, Any]]:
    return [
        {"fingerprint": fp, "record_id": f"c/t/0/{i}", "event_id": f"e{i}", "time": 1000 + i,
         "severity": 2, "status": "ABNORMAL"}
        for i, fp in enumerate(FINGERPRINTS * 3)
    ]  # fmt: skip


def space_calls(recorder: Recorder, space: Space) -> None:
    """Every script call site on one topic's space, on several partitions."""
    parts = list(range(8))
    store = RedisOffsetStore(recorder)  # type: ignore[arg-type]
    leases = RedisLeases(recorder, Owner("h", 1), 30.0)  # type: ignore[arg-type]
    ledger = RedisLedger(recorder)  # type: ignore[arg-type]
    brake = RedisBrake(recorder)  # type: ignore[arg-type]
    slots = Slots(recorder, space, 10.0, 10.0)  # type: ignore[arg-type]
    held = [Lease(p, 1, 0.0) for p in parts]
    fences = {p: Fence(1, 0) for p in parts}
    slices = [Slice(p, f"b{p}", 0, 10) for p in parts]
    entry = InFlight(3, "b3", 0, 10, 1, 0, 0)
    halves = [Slice(3, "b3a", 0, 5), Slice(3, "b3b", 5, 10)]
    for action in (
        lambda: store.commit(space, "t", [Checkpoint(p, 5, 1, 0) for p in parts]),
        lambda: store.reset(space, {p: 0 for p in parts}),
        lambda: leases.acquire(space, parts),
        lambda: leases.renew(space, held),
        lambda: leases.release(space, held),
        lambda: ledger.snapshot(space, parts),
        lambda: ledger.record(space, "t", fences, slices, 1000),
        lambda: ledger.finish(space, slices),
        lambda: ledger.begin(space, slices, 1000, 3),
        lambda: ledger.redrive(space, "t", Fence(1, 0), entry, halves, 1000),
        lambda: ledger.expedite(space, slices),
        lambda: brake.report(space, Limits(10, 0.5, 3), PULL, Tally.of([True, False]), 2),
        lambda: brake.check(space),
        lambda: brake.resume(space),
        lambda: slots.claim(1, "t"),
        lambda: slots.hand_over(1, "t"),
        lambda: slots.release(1, "t"),
    ):
        drive(action)


def state_calls(recorder: Recorder) -> None:
    """Every script call site of ``workers.state`` and ``workers.alarms``: per topic, on
    several topics at once (the idle probe), and on many fingerprints (the alert store, as
    on a cluster: ``per_slot``)."""
    spaces = [Space("p", "c", "g", f"topic-{i}") for i in range(5)]
    for space in spaces:
        space_calls(recorder, space)
    idle = IdleProbe(recorder)  # type: ignore[arg-type]
    registry = TopicRegistry(recorder, "p:topics:{c/g}")  # type: ignore[arg-type]
    alerts = AlertStore(recorder, "p", 3600, per_slot=True)  # type: ignore[arg-type]
    drive(lambda: idle.books({space: range(8) for space in spaces}))
    drive(lambda: registry.register(["a", "b"], 1000))
    drive(lambda: alerts.apply(events()))
    drive(lambda: alerts.close_quiet(5000))
    drive(lambda: alerts.forget_closed([c["alert"] for c in changes(quiet=True)], 5000))
    drive(lambda: alerts.claim(changes(quiet=False)))
    drive(lambda: alerts.release(changes(quiet=False)))
    drive(lambda: alerts.mark_published(changes(quiet=True)))


def test_every_script_call_touches_keys_of_one_hash_slot() -> None:
    recorder = Recorder()

    state_calls(recorder)

    assert spanning(recorder.calls) == []
    assert {text for text, keys in recorder.calls if len(keys) > 1}  # calls of many keys ran
    assert recorder.registered <= {text for text, _ in recorder.calls}  # every script ran


def test_the_check_finds_a_call_that_spans_slots() -> None:
    recorder = Recorder()
    alerts = AlertStore(recorder, "p", 3600, per_slot=False)  # type: ignore[arg-type]

    drive(lambda: alerts.apply(events()))

    assert spanning(recorder.calls)
