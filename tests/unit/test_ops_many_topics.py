"""Operator commands on a pipeline over many topics, without services: which topics a command
works on and where their new partitions start, the per-topic and total numbers, the JSON
objects and text lines, reset plans naming several topics, the topics `check` and `topics
create` see, and the exporter's series per topic (the integration tests run the commands
against real Redis and a real broker: tests/integration/test_cli_many_topics.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from workers.cli import documents
from workers.cli.inspect import _many_lines
from workers.cli.offsets import _render_many
from workers.config import PipelineConfig, Settings, StartPolicy, load_settings
from workers.metrics.lag import LagCollector, TimestampCache
from workers.ops.check_topics import _many_copies, _many_topics
from workers.ops.context import OpsError
from workers.ops.dlq import Letter
from workers.ops.overview import ManyStatus, per_topic
from workers.ops.pace import Sample
from workers.ops.pipeline_topics import (
    Registered,
    narrowed,
    one_topic,
    start_of,
    topics_now,
)
from workers.ops.resetplan import PlanError, parse_plans
from workers.ops.resets import Target
from workers.ops.status import Flight, PartitionStatus, PipelineStatus
from workers.ops.topics import create_topics, needed_topics
from workers.pulling.positions import ResetRow
from workers.state.brake import Trip

NOW_MS = 1_700_000_000_000


def settings(**pipelines: dict[str, Any]) -> Settings:
    return load_settings({
        "workers_redis_url": "redis://127.0.0.1:1/0",
        "workers_kafka_clusters": {"test": {"bootstrap_servers": ["127.0.0.1:1"]}},
        "workers_pipelines": {name: {"cluster": "test", "tasks": ["x.parse"], **p}
                              for name, p in pipelines.items()},
    }, environ={})  # fmt: skip


def many(**options: Any) -> PipelineConfig:
    found = settings(m={"topic_pattern": "alarm-.*", "start": "latest", **options})
    return found.pipeline("m")


@dataclass
class FakeConsumer:
    """The cluster's topics and partitions, as the consumer reports them."""

    parts: dict[str, int]

    def topics(self) -> set[str]:
        return set(self.parts)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(range(self.parts[topic])) if topic in self.parts else None


@dataclass
class FakeAdmin:
    existing: set[str]
    created: list[str] = field(default_factory=list)

    def list_topics(self) -> list[str]:
        return sorted(self.existing)

    def create_topics(self, new: list[Any]) -> None:
        self.created += [t.name for t in new]


@dataclass
class FakeConnections:
    consumer_: FakeConsumer
    admin_: FakeAdmin = field(default_factory=lambda: FakeAdmin(set()))

    def consumer(self, cluster: str) -> FakeConsumer:
        return self.consumer_

    def admin(self, cluster: str) -> FakeAdmin:
        return self.admin_


@dataclass
class FakeOps:
    """What ``pipeline_topics`` and ``check_topics`` use of ``Ops``; Redis is never reached
    for a pipeline not yet looked at (``registered`` is patched)."""

    settings: Settings
    connections: FakeConnections


def part(partition: int, stored: int | None, end: int) -> PartitionStatus:
    lag = None if stored is None else end - stored
    return PartitionStatus(partition, stored, 0, end, lag, None, None, 0)


def topic(
    config: PipelineConfig,
    name: str,
    rows: list[PartitionStatus],
    counters: dict[str, int] | None = None,
    brake: Trip | None = None,
) -> PipelineStatus:
    return PipelineStatus(narrowed(config, name), rows, counters or {}, NOW_MS, brake)


# -- which topics, and where they start ----------------------------------------------------------


def test_a_pattern_reads_whole_matching_names_never_a_dead_letter_or_internal_topic() -> None:
    config = settings(m={"topic_pattern": "(__)?alarm-.*"}, one={"topic": "alarm-x"})
    consumer = FakeConsumer({"alarm-a": 1, "alarm-b": 2, "my-alarm-c": 1, "alarm-x.dlq": 1,
                             "__alarm-internal": 1})  # fmt: skip
    ops: Any = FakeOps(config, FakeConnections(consumer))

    found = topics_now(ops, config.pipeline("m"))

    assert found == ["alarm-a", "alarm-b"]
    assert topics_now(ops, config.pipeline("one")) == ["alarm-x"]  # one topic: as configured


def test_a_topic_found_at_the_first_look_starts_at_start_and_a_later_one_at_new_topic_start(
) -> None:  # fmt: skip
    config = many(new_topic_start="earliest")
    registry = Registered({"alarm-a": "initial", "alarm-b": "1700000000000"}, looked=True)

    starts = {t: start_of(config, t, registry) for t in ("alarm-a", "alarm-b", "alarm-c")}
    before_any_look = start_of(config, "alarm-c", Registered({}, looked=False))
    after_an_empty_look = start_of(config, "alarm-c", Registered({}, looked=True))

    assert starts == {"alarm-a": StartPolicy("latest"), "alarm-b": StartPolicy("earliest"),
                      "alarm-c": StartPolicy("earliest")}  # fmt: skip
    assert before_any_look == StartPolicy("latest")
    assert after_an_empty_look == StartPolicy("earliest")


def test_narrowing_makes_a_pipeline_of_one_topic_and_leaves_one_of_one_alone() -> None:
    config = many()
    single = settings(s={"topic": "t"}).pipeline("s")

    one = narrowed(config, "alarm-a", StartPolicy("earliest"))

    assert (one.topic, one.topics, one.topic_pattern, one.multi) == ("alarm-a", (), "", False)
    assert (one.name, one.group, one.start) == ("m", config.group, StartPolicy("earliest"))
    assert narrowed(single, "other") is single


def test_a_topic_that_is_not_the_pipelines_now_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = settings(m={"topics": ["a", "b"]}, s={"topic": "t"})
    ops: Any = FakeOps(config, FakeConnections(FakeConsumer({"a": 1, "c": 1})))
    monkeypatch.setattr("workers.ops.pipeline_topics.registered",
                        lambda ops, p: Registered({}, False))  # fmt: skip

    chosen = one_topic(ops, config.pipeline("m"), "a")
    with pytest.raises(OpsError) as missing:
        one_topic(ops, config.pipeline("m"), "b")  # listed, not created
    with pytest.raises(OpsError) as other:
        one_topic(ops, config.pipeline("s"), "a")

    assert chosen.topic == "a"
    says = "topic 'b' is not one of the topics of pipeline 'm' now (topics a, b on cluster"
    assert says in str(missing.value)
    assert str(other.value) == "pipeline 's' reads topic 't', not 'a'"


# -- totals and documents ------------------------------------------------------------------------


def test_the_totals_of_many_topics_add_up_their_topics() -> None:
    config = many()
    a = topic(config, "alarm-a", [part(0, 5, 10), part(1, 2, 2)], {"records": 7, "last_ms": 5})
    b = topic(config, "alarm-b", [part(0, None, 4)], {"records": 3, "last_ms": 9})
    status = ManyStatus(config, [a, b], NOW_MS)

    assert (status.lag, status.read, status.started) == (5, 7, True)
    assert status.counters == {"records": 10, "last_ms": 9}
    assert len(status.partitions) == 3 and status.flight == Flight()
    assert per_topic(status) == [a, b] and per_topic(a) == [a]


def test_json_has_one_object_per_topic_and_one_with_no_topic_when_none_is_read() -> None:
    config = many()
    a = topic(config, "alarm-a", [part(0, 5, 10)])
    b = topic(config, "alarm-b", [part(0, 1, 1)])
    rows: list[tuple[str, Any]] = [("m", ManyStatus(config, [a, b], NOW_MS)),
                                   ("n", ManyStatus(config, [], NOW_MS))]  # fmt: skip

    shown = documents.offsets_show(rows)["pipelines"]
    lagging = documents.lag(rows, {"m/alarm-a": documents_pace()})["pipelines"]

    assert [(o["pipeline"], o["topic"], o["lag"]) for o in shown] == [
        ("m", "alarm-a", 5), ("m", "alarm-b", 0), ("m", None, None)]  # fmt: skip
    assert shown[2]["partitions"] == []
    assert [(o["topic"], o["read_per_second"]) for o in lagging] == [
        ("alarm-a", 3.0), ("alarm-b", None), (None, None)]  # fmt: skip


def documents_pace() -> Any:
    from workers.ops.pace import Pace

    return Pace(3.0, -1.0, 5)


def test_a_reset_of_many_topics_names_the_topic_of_each_partition() -> None:
    config = many()
    a = documents.TopicReset("alarm-a", [ResetRow(0, 1, 4)], {0: (0, 4)}, {0})
    b = documents.TopicReset("alarm-b", [ResetRow(0, None, 2)], {0: (0, 9)}, set())

    both = documents.offsets_reset_many(config, Target("to", "latest"), False, [a, b])
    one = documents.offsets_reset_many(config, Target("to", "latest"), True, [b])

    assert set(both) == set(documents.KEYS["offsets reset"])
    assert (both["topic"], one["topic"]) == (None, "alarm-b")
    assert [(r["topic"], r["partition"], r["after"], r["held"]) for r in both["partitions"]] == [
        ("alarm-a", 0, 4, True), ("alarm-b", 0, 2, False)]  # fmt: skip


def test_the_pace_of_many_topics_counts_each_topics_partitions_apart() -> None:
    config = many()
    status = ManyStatus(config, [topic(config, "alarm-a", [part(0, 5, 10)]),
                                 topic(config, "alarm-b", [part(0, 7, 7)])], NOW_MS)  # fmt: skip

    sample = Sample.of(status, 1.0)

    assert sample.committed == {("alarm-a", 0): 5, ("alarm-b", 0): 7}
    assert sample.lag == 5


# -- text ----------------------------------------------------------------------------------------


def test_lag_prints_the_totals_then_a_line_per_topic() -> None:
    config = many()
    trip = Trip(NOW_MS - 1000, "consecutive", "pull", 0.0, 1001, 1001, 0)
    a = topic(config, "alarm-a", [part(0, 5, 10)], {"last_ms": NOW_MS - 3000}, brake=trip)
    b = topic(config, "alarm-b", [part(0, None, 4)])
    b = PipelineStatus(narrowed(config, "alarm-b", StartPolicy("earliest")), b.partitions, {},
                       NOW_MS)  # fmt: skip

    lines = _many_lines("m", ManyStatus(config, [a, b], NOW_MS, ("alarm-z",)), {})
    empty = _many_lines("m", ManyStatus(config, [], NOW_MS), {})

    assert lines[0].startswith("m  test/topics matching 'alarm-.*' (2 topics)  missing alarm-z  "
                               "STOPPED BY THE DEAD-LETTER BRAKE (1 topic(s), see below)  "
                               "lag 5  ")  # fmt: skip
    assert lines[1].startswith("  alarm-a  STOPPED BY THE DEAD-LETTER BRAKE (tripped 1s ago")
    assert "last pull 3s ago" in lines[1]
    assert lines[2] == "  alarm-b  not started (starts at earliest)"
    assert empty == ["m  test/topics matching 'alarm-.*' (0 topics)  no topic matches now"]


def test_offsets_show_prints_a_topic_column_and_where_new_topics_start() -> None:
    config = many()
    a = topic(config, "alarm-a", [part(0, 5, 10), part(1, 2, 2)])
    b = PipelineStatus(narrowed(config, "alarm-b", StartPolicy("earliest")),
                       [part(0, None, 4)], {}, NOW_MS, kafka_copy="off")  # fmt: skip

    text = _render_many(ManyStatus(config, [a, b], NOW_MS)).splitlines()

    assert text[0] == ("pipeline m: test/topics matching 'alarm-.*', group workers, beat; "
                       "2 topics; lag 5, oldest unread -")  # fmt: skip
    assert text[1].split()[:3] == ["topic", "partition", "committed"]
    assert [line.split()[:3] for line in text[2:5]] == [
        ["alarm-a", "0", "5"], ["alarm-a", "1", "2"], ["alarm-b", "0", "-"]]  # fmt: skip
    assert "nothing stored yet in topic alarm-b: the first pull starts at earliest" in text
    assert "Kafka's copy of the offsets (group workers) of topic alarm-b: off" in text


# -- reset plans ---------------------------------------------------------------------------------


def test_a_plan_may_name_any_topic_of_the_pipeline_and_refuses_the_others_by_line() -> None:
    topics = {"alarm-a": [0, 1], "alarm-b": [0]}
    text = "alarm-a,0,5\nalarm-b,0,7\nalarm-a,1,0\n"

    plan = parse_plans(text, "plan.csv", topics, "workers", "topics matching 'alarm-.*'")
    with pytest.raises(PlanError) as other:
        parse_plans("alarm-a,0,5\nalarm-c,0,1\n", "plan.csv", topics, "workers", "topics x")
    with pytest.raises(PlanError) as twice:
        parse_plans("alarm-a,0,5\nalarm-a,0,6\n", "plan.csv", topics, "workers", "topics x")

    assert plan == {"alarm-a": {0: 5, 1: 0}, "alarm-b": {0: 7}}
    assert str(other.value) == ("plan.csv line 2: topic 'alarm-c' is not one of the pipeline's "
                                "topics now (topics x)")  # fmt: skip
    assert str(twice.value) == "plan.csv line 2: 'alarm-a' partition 0 again (first on line 1)"


# -- check and topics create ---------------------------------------------------------------------


def test_listed_topics_are_needed_but_may_be_missing_and_a_pattern_names_none() -> None:
    config = settings(m={"topics": ["a", "b"]}, p={"topic_pattern": "x-.*"}, s={"topic": "b"})

    needed = {(n.topic, n.optional) for n in needed_topics(config)}

    assert needed == {("a", True), ("b", False), ("m.dlq", False), ("p.dlq", False),
                      ("b.dlq", False)}  # fmt: skip


def test_topics_create_creates_listed_topics_and_says_a_pattern_cannot_be_created() -> None:
    config = settings(m={"topics": ["a"]}, p={"topic_pattern": "x-.*"})
    admin = FakeAdmin({"m.dlq"})
    ops: Any = FakeOps(config, FakeConnections(FakeConsumer({}), admin))

    found = {(r.topic, r.status) for r in create_topics(ops, 1, 1)}

    assert found == {("a", "created"), ("m.dlq", "exists"), ("p.dlq", "created"),
                     ("x-.*", "skipped")}  # fmt: skip
    assert sorted(admin.created) == ["a", "p.dlq"]


def test_check_counts_the_topics_a_pipeline_reads_and_warns_when_it_reads_none() -> None:
    config = settings(
        p={"topic_pattern": "x-.*", "mode": "long_lived", "concurrency": 4},
        q={"topic_pattern": "nothing-.*"},
        l={"topics": ["gone"]},
    )
    consumer = FakeConsumer({"x-1": 1, "x-2": 2, "p.dlq": 1})
    ops: Any = FakeOps(config, FakeConnections(consumer))
    names = consumer.topics()

    reads = _many_topics(ops, "p", config.pipeline("p"), names)
    none = _many_topics(ops, "q", config.pipeline("q"), names)
    listed = _many_topics(ops, "l", config.pipeline("l"), names)

    assert (reads.level, reads.detail) == ("warn", "reads 2 topic(s) matching 'x-.*' (3 "
                                           "partitions): x-1, x-2; concurrency 4 > 3 "
                                           "partitions: consumers will idle")  # fmt: skip
    assert none.level == "warn"
    assert none.detail == ("no topic on cluster test matches 'nothing-.*': nothing is read "
                           "until one is created")  # fmt: skip
    assert listed.level == "warn" and "none of its listed topics exists" in listed.detail


def test_the_kafka_copy_finding_of_many_topics_names_those_with_a_problem() -> None:
    config = many()
    fine = [("a", "ok", "group workers: 1 partition(s) in step"),
            ("b", "ok", "group workers: nothing stored yet")]  # fmt: skip
    bad = [*fine, ("c", "warn", "group workers: stale")]

    assert _many_copies(config, fine) == ("ok", "group workers: 2 topic(s), each in step, "
                                                "following or with nothing stored yet")  # fmt: skip
    assert _many_copies(config, fine[:1]) == ("ok", "1 topic(s): group workers: 1 partition(s) "
                                                    "in step")  # fmt: skip
    assert _many_copies(config, bad) == ("warn", "topic c: group workers: stale")


# -- dead letters --------------------------------------------------------------------------------


def test_a_letter_names_the_topic_it_came_from() -> None:
    headers = (("workers.cluster", b"test"), ("workers.topic", b"alarm-a"))

    came = Letter(0, 1, 0, "r", "test/alarm-a/0/1", None, b"v", headers, None)
    unnamed = Letter(0, 2, 0, "r", "?/?/?/?", None, b"v", (), None)

    assert (came.topic, unnamed.topic) == ("alarm-a", None)


# -- the exporter --------------------------------------------------------------------------------


def scrape(collector: LagCollector) -> set[tuple[str, str, str]]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {(s.name, s.labels.get("topic", ""), s.labels.get("partition", ""))
            for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == "workers_log_end_offset"}  # fmt: skip


def test_the_exporter_exports_each_topic_and_drops_a_topic_no_longer_read() -> None:
    config = many()
    readings = [
        ManyStatus(config, [topic(config, "alarm-a", [part(0, 1, 2)]),
                            topic(config, "alarm-b", [part(0, 1, 1), part(1, 0, 0)])], NOW_MS),
        ManyStatus(config, [topic(config, "alarm-a", [part(0, 2, 2)])], NOW_MS),
    ]  # fmt: skip

    def status(name: str, times: Any) -> ManyStatus:
        return readings.pop(0)

    collector = LagCollector(["m"], status, lambda name: ("q", 0), min_interval=0)

    first, second = scrape(collector), scrape(collector)

    assert first == {("workers_log_end_offset", "alarm-a", "0"),
                     ("workers_log_end_offset", "alarm-b", "0"),
                     ("workers_log_end_offset", "alarm-b", "1")}  # fmt: skip
    assert second == {("workers_log_end_offset", "alarm-a", "0")}


def test_the_timestamp_cache_keeps_each_topic_apart_and_forgets_topics_no_longer_read() -> None:
    asked: list[tuple[str, dict[int, int]]] = []

    def read(consumer: Any, topic: str, offsets: dict[int, int]) -> dict[int, int]:
        asked.append((topic, dict(offsets)))
        return {p: 1000 + o for p, o in offsets.items()}

    cache = TimestampCache(read)
    cache(None, "a", {0: 5})
    cache(None, "b", {0: 5})
    again = cache(None, "a", {0: 5})
    cache.keep({"b"})
    cache(None, "a", {0: 5})

    assert again == {0: 1005}
    assert asked == [("a", {0: 5}), ("b", {0: 5}), ("a", {0: 5})]
