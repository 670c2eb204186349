"""The dead-letter brake on a real redis-server follows the twin's rule (``judge``): the same
reports give the same verdicts, trips, reminders and resumes."""

from __future__ import annotations

import random

import pytest
import redis

from workers.state.brake import PULL, Brake, Limits, MemoryBrake, Tally
from workers.state.brake_redis import RedisBrake
from workers.state.keys import Space
from workers.state.stats import read

pytestmark = pytest.mark.integration

LIMITS = [
    Limits(window=50, max_ratio=0.3, max_consecutive=None),
    Limits(window=50, max_ratio=None, max_consecutive=4),
    Limits(window=40, max_ratio=0.5, max_consecutive=6),
]


def script(seed: int) -> list[tuple[str, Tally, int]]:
    """Reports from the pull and two stages, mostly good, with bursts of dead letters."""
    rng = random.Random(seed)
    out = []
    for _ in range(60):
        source = rng.choice([PULL, "s.parse", "s.build"])
        burst = rng.random() < 0.2
        verdicts = [rng.random() < (0.8 if burst else 0.05) for _ in range(rng.randint(0, 9))]
        out.append((source, Tally.of(verdicts), len(verdicts) if source == PULL else 0))
    return out


def run(brake: Brake, space: Space, limits: Limits, seed: int) -> list[tuple[object, ...]]:
    seen: list[tuple[object, ...]] = []
    for i, (source, tally, counted) in enumerate(script(seed)):
        if i % 7 == 6:
            brake.passed(space, source)
        verdict = brake.report(space, limits, source, tally, counted)
        trip = verdict.trip
        seen.append((verdict.tripped, None if trip is None else trip.as_dict() | {"tripped_ms": 0}))
        if verdict.tripped and i % 3 == 0:
            cleared = brake.resume(space)
            seen.append(("resumed", cleared is not None))
    return seen


@pytest.mark.parametrize("seed", range(1, 7))
@pytest.mark.parametrize("limits", LIMITS, ids=str)
def test_redis_and_the_twin_give_the_same_verdicts(
    redis_client: redis.Redis, key_prefix: str, limits: Limits, seed: int
) -> None:
    space = Space(key_prefix, "common", "g1", f"topic-{seed}")

    on_redis = run(RedisBrake(redis_client), space, limits, seed)
    on_twin = run(MemoryBrake(), space, limits, seed)

    assert on_redis == on_twin
    assert any(tripped for tripped, *_ in on_redis if tripped != "resumed")


def test_a_trip_is_counted_reminded_once_and_cleared_by_resume(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    space = Space(key_prefix, "common", "g1", "topic-r")
    brake = RedisBrake(redis_client)
    limits = Limits(window=100, max_ratio=None, max_consecutive=3)

    trip = brake.report(space, limits, PULL, Tally.of([True] * 4), 4).trip
    checks = [brake.check(space, remind_ms=0)[1], brake.check(space, remind_ms=60_000)[1]]
    state = brake.state(space)
    cleared = brake.resume(space)

    assert trip is not None and state == trip and cleared == trip
    assert (trip.reason, trip.consecutive, trip.source) == ("consecutive", 4, PULL)
    assert checks == [True, False]
    assert brake.state(space) is None and brake.check(space) == (None, False)
    assert read(redis_client, space)["brake_trips"] == 1
