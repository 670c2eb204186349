"""The rule ``workers check`` applies to Kafka's copy of the offsets against Redis's
(``workers.ops.kafka_drift.judge``), case by case, with a fixed time."""

from __future__ import annotations

import pytest

from tests.unit.pulling_world import SPACE, pipeline
from workers.kafka.group_offsets import Committed, writer
from workers.ops.kafka_drift import STALE_GRACE_SECONDS, STALE_INTERVALS, judge
from workers.state.copies import Copied

NOW = 1_700_000_000_000
OURS = writer(SPACE, "alarms")
# With copies every 5 s, a copy older than 3 x 5 + 30 = 45 s is stale.
STALE_MS = int((STALE_INTERVALS * 5.0 + STALE_GRACE_SECONDS) * 1000)


def kind(redis: int | None, kafka: int | None, copied_ago_ms: int | None, meta: str = OURS) -> str:
    found = judge(
        pipeline(kafka_commit_seconds=5.0),
        SPACE,
        {0: redis},
        {} if kafka is None else {0: Committed(kafka, meta)},
        {} if copied_ago_ms is None else {0: Copied(kafka or 0, NOW - copied_ago_ms)},
        NOW,
    )
    return found[0].kind if found else "nothing"


@pytest.mark.parametrize(
    ("redis", "kafka", "copied_ago_ms", "expected"),
    [
        (None, None, None, "nothing"),  # never started
        (100, 100, None, "in_step"),
        (100, 100, 10 * STALE_MS, "in_step"),  # an idle pipeline: nothing to copy
        (120, 100, 1_000, "following"),  # the copy trails by up to an interval
        (120, 100, STALE_MS, "following"),
        (120, 100, STALE_MS + 1, "stale"),  # no pull copies it, or its commits fail
        (120, None, None, "stale"),  # never copied
        (120, None, 1_000, "following"),  # just started
        (100, 120, 1_000, "ahead"),  # Redis went back (a failover to a lagging replica)
        (None, 120, None, "ahead"),  # Redis lost it: the next pull restores from Kafka
    ],
)
def test_each_case_of_the_rule(
    redis: int | None, kafka: int | None, copied_ago_ms: int | None, expected: str
) -> None:
    assert kind(redis, kafka, copied_ago_ms) == expected


def test_offsets_of_another_writer_are_reported_whatever_their_value() -> None:
    other = "celery-kafka-workers prefix=staging pipeline=alarms"

    assert kind(100, 100, 1_000, meta=other) == "foreign"
    assert kind(100, 90, 1_000, meta="") == "following"  # no metadata: a broker keeping none


def test_a_problem_names_the_partition_and_the_numbers() -> None:
    drifts = judge(
        pipeline(kafka_commit_seconds=5.0),
        SPACE,
        {0: 1_500, 1: 10, 2: 7},
        {0: Committed(1_200, OURS), 1: Committed(12, OURS), 2: Committed(7, OURS)},
        {0: Copied(1_200, NOW - 95_000)},
        NOW,
    )

    assert [(d.kind, d.text, d.problem) for d in drifts] == [
        ("stale", "0: 300 behind, last copied 95 s ago", True),
        ("ahead", "1: Kafka 12 > Redis 10", True),
        ("in_step", "", False),
    ]
