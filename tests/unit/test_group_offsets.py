"""The kafka-python side of Kafka's group offsets, its setting and its client, on fakes: what
is sent, how long it may wait, and what a refusal says."""

from __future__ import annotations

from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import (
    CommitFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaTimeoutError,
)
from kafka.structs import OffsetAndMetadata

from tests.unit.fakes import FakeFactories, ManualClock
from workers.config import load_settings
from workers.connections import Connections
from workers.exceptions import ConfigError, RecoverableError
from workers.kafka.group_offsets import Committed, KafkaGroupOffsets, foreign, writer
from workers.state.keys import Space

SPACE = Space("prod", "common", "alarms", "events")


class GroupClient:
    """Stands in for a kafka-python consumer with a group id: remembers commits, answers
    ``committed`` from ``offsets``, raises ``error`` when set."""

    def __init__(self, offsets: dict[int, OffsetAndMetadata] | None = None) -> None:
        self.offsets = offsets or {}
        self.commits: list[tuple[dict[TopicPartition, OffsetAndMetadata], int]] = []
        self.asked: list[int] = []
        self.error: Exception | None = None

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata], timeout_ms: int) -> None:
        if self.error is not None:
            raise self.error
        self.commits.append((offsets, timeout_ms))

    def committed(self, tp: TopicPartition, metadata: bool, timeout_ms: int) -> Any:
        assert metadata is True
        self.asked.append(timeout_ms)
        if self.error is not None:
            raise self.error
        return self.offsets.get(tp.partition)


def test_a_commit_sends_each_offset_with_its_metadata_and_the_wait() -> None:
    client = GroupClient()

    KafkaGroupOffsets(lambda: client, "alarms").commit("events", {1: 9, 0: 4}, "meta", 2.5)

    [(sent, timeout_ms)] = client.commits
    assert sent == {
        TopicPartition("events", 0): OffsetAndMetadata(4, "meta", -1),
        TopicPartition("events", 1): OffsetAndMetadata(9, "meta", -1),
    }
    assert timeout_ms == 2500


def test_committed_reads_each_partition_and_leaves_out_those_without_an_offset() -> None:
    client = GroupClient({0: OffsetAndMetadata(7, "m", -1), 1: OffsetAndMetadata(-1, "", -1)})

    found = KafkaGroupOffsets(lambda: client, "alarms").committed("events", [0, 1, 2], 3.0)

    assert found == {0: Committed(7, "m")}
    assert all(0 < ms <= 3000 for ms in client.asked)


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (KafkaTimeoutError("timed out"), "KafkaTimeoutError"),
        (GroupAuthorizationFailedError(), "needs Read on group 'alarms'"),
        (CommitFailedError(), "another application uses this group id"),
        (KafkaConnectionError("refused"), "KafkaConnectionError"),
    ],
)
def test_a_refusal_is_a_recoverable_error_that_says_why_and_drops_the_client(
    error: Exception, says: str
) -> None:
    client, dropped = GroupClient(), []
    client.error = error
    offsets = KafkaGroupOffsets(lambda: client, "alarms", dropped.append)

    with pytest.raises(RecoverableError, match="cannot commit offsets of group 'alarms'") as info:
        offsets.commit("events", {0: 1}, "", 1.0)
    with pytest.raises(RecoverableError, match="cannot read the offsets"):
        offsets.committed("events", [0], 1.0)

    assert says in str(info.value)
    assert dropped == [error, error]


def test_reading_many_partitions_stops_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    client = GroupClient()
    times = iter([0.0, 0.0, 0.25, 0.5, 1.25])  # the deadline, then before each partition
    monkeypatch.setattr("workers.kafka.group_offsets.time.monotonic", lambda: next(times))

    with pytest.raises(RecoverableError, match="no answer within 1 s"):
        KafkaGroupOffsets(lambda: client, "alarms").committed("events", [0, 1, 2, 3], 1.0)

    assert client.asked == [1000, 750, 500]  # each wait is what is left


def test_metadata_names_the_writer_and_tells_another_one_apart() -> None:
    ours = writer(SPACE, "alarms")

    assert ours == "celery-kafka-workers prefix=prod pipeline=alarms"
    assert not foreign(Committed(1, ours), SPACE)
    assert not foreign(Committed(1, writer(SPACE, "renamed")), SPACE)  # same key prefix
    assert not foreign(Committed(1, None), SPACE) and not foreign(Committed(1, ""), SPACE)
    assert foreign(Committed(1, "celery-kafka-workers prefix=staging pipeline=alarms"), SPACE)
    assert foreign(Committed(1, "consumer-of-another-app"), SPACE)
    assert foreign(Committed(1, "celery-kafka-workers prefix=prod2 pipeline=x"), SPACE)


# -- the setting ---------------------------------------------------------------------------------


def settings(**pipeline: Any) -> Any:
    conf = {
        "workers_kafka_clusters": {"common": {"bootstrap_servers": ["k1:9092"], "timeout": 2.5}},
        "workers_pipelines": {
            "p": {"cluster": "common", "topic": "t", "tasks": ["a.b"], **pipeline}
        },
    }
    return load_settings(conf, environ={})


def test_kafka_commit_seconds_defaults_to_five_and_none_switches_the_copy_off() -> None:
    assert settings().pipelines["p"].kafka_commit_seconds == 5.0
    assert settings(kafka_commit_seconds=None).pipelines["p"].kafka_commit_seconds is None
    assert settings(kafka_commit_seconds=60).pipelines["p"].kafka_commit_seconds == 60.0


@pytest.mark.parametrize("value", [0, 0.5, 3601, -1, True, "5", float("nan"), 10**400])
def test_a_bad_kafka_commit_seconds_is_one_line_naming_the_key(value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        settings(kafka_commit_seconds=value)

    message = str(info.value)
    assert message.startswith("workers_pipelines.p.kafka_commit_seconds: got ")
    assert "between 1 and 3600, or None" in message and "\n" not in message


def test_kafka_commit_seconds_comes_from_the_environment_too() -> None:
    conf = {
        "workers_kafka_clusters": {"common": {"bootstrap_servers": ["k1:9092"]}},
        "workers_pipelines": {"p": {"cluster": "common", "topic": "t", "tasks": ["a.b"]}},
    }
    env = "WORKERS_PIPELINE_P_KAFKA_COMMIT_SECONDS"

    off = load_settings(conf, environ={env: "None"})
    with pytest.raises(ConfigError, match=f"^{env}: got 'often'; expected seconds"):
        load_settings(conf, environ={env: "often"})

    assert off.pipelines["p"].kafka_commit_seconds is None


# -- the client ----------------------------------------------------------------------------------


def test_the_group_client_is_a_consumer_with_the_group_id_that_never_commits_by_itself() -> None:
    fakes = FakeFactories()
    cache = Connections(settings(), clock=ManualClock(), factories=fakes.factories())

    first = cache.group("common", "alarms")
    again = cache.group("common", "alarms")
    other = cache.group("common", "audit")

    assert first is again and other is not first
    options = fakes.consumer.built[0].options
    assert options["group_id"] == "alarms" and options["enable_auto_commit"] is False
    assert options["bootstrap_timeout_ms"] == 2500  # the cluster's timeout, not 30 s


def test_a_discarded_group_client_is_built_again() -> None:
    fakes = FakeFactories()
    cache = Connections(settings(), clock=ManualClock(), factories=fakes.factories())
    first = cache.group("common", "alarms")

    cache.discard("group", "common/alarms", KafkaTimeoutError("timed out"))

    assert first.closed and cache.group("common", "alarms") is not first
