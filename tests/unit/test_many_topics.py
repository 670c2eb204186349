"""Pipelines over many topics: the settings, which topics a pipeline reads and when it looks
again (``workers.pulling.topics``), and the cycle over them (``workers.pulling.fanout``),
with the registry, the books and the per-topic pullers as in-memory twins."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.unit.config_support import minimal_conf
from workers.config import PipelineConfig, StartPolicy
from workers.config.load import load_settings
from workers.exceptions import RecoverableError
from workers.pulling import fanout, topics
from workers.pulling.cycle import Summary
from workers.pulling.fanout import Fanout, FanoutSummary, busy, in_turn
from workers.pulling.puller import TopicMissing
from workers.pulling.topics import Topic, TopicSource, matching
from workers.state.keys import Space
from workers.state.topics import Books, Registered
from workers.testing.memory_log import MemoryConsumer, MemoryLog


@pytest.fixture(autouse=True)
def fresh_process_state() -> None:
    topics._LOOKS.clear()
    topics._MISSING.clear()
    fanout._LAST.clear()


def settings(**pipeline: Any) -> PipelineConfig:
    conf = minimal_conf(**pipeline)
    del conf["workers_pipelines"]["alarms"]["topic"]
    return load_settings(conf, {}).pipeline("alarms")


# -- settings ---------------------------------------------------------------------------


def test_a_list_or_a_pattern_makes_a_pipeline_of_many_with_its_own_dead_letter_topic() -> None:
    listed = settings(topics=["a", "b"])
    pattern = settings(topic_pattern="^alarm-.*", new_topic_start="latest")
    one = load_settings(minimal_conf(), {}).pipeline("alarms")

    assert (listed.multi, listed.topic, listed.topics) == (True, "", ("a", "b"))
    assert (pattern.multi, pattern.topic_pattern) == (True, "^alarm-.*")
    assert listed.dead_letter_topic == pattern.dead_letter_topic == "alarms.dlq"
    assert listed.new_topic_start == StartPolicy("earliest")  # the default: skip nothing new
    assert pattern.new_topic_start == StartPolicy("latest")
    assert listed.topics_refresh_seconds == 30.0
    assert (one.multi, one.source, one.dead_letter_topic) == (False, "alarm-events",
                                                             "alarm-events.dlq")  # fmt: skip
    assert listed.source == "topics a, b" and pattern.source == "topics matching '^alarm-.*'"


def test_the_environment_gives_a_list_as_commas_and_a_pattern_as_text() -> None:
    conf = minimal_conf()
    del conf["workers_pipelines"]["alarms"]["topic"]
    env = {"WORKERS_PIPELINE_ALARMS_TOPICS": "a,b", "WORKERS_PIPELINE_ALARMS_NEW_TOPIC_START":
           "latest"}  # fmt: skip

    listed = load_settings(conf, env).pipeline("alarms")
    pattern = load_settings(conf, {"WORKERS_PIPELINE_ALARMS_TOPIC_PATTERN": "a-.*"})

    assert (listed.topics, listed.new_topic_start) == (("a", "b"), StartPolicy("latest"))
    assert pattern.pipeline("alarms").topic_pattern == "a-.*"


def test_matching_is_whole_names_and_never_internal_or_dead_letter_topics() -> None:
    pattern = settings(topic_pattern="alarm-.*")
    names = ["alarm-1", "alarm-2", "x-alarm-3", "alarm-1.dlq", "__alarm-x", "alarm"]

    assert matching(pattern, names, {"alarm-1.dlq"}) == ["alarm-1", "alarm-2"]
    assert matching(settings(topics=["b", "a", "gone"]), ["a", "b", "c"], ()) == ["a", "b"]


@pytest.mark.parametrize(
    ("names", "last", "expected"),
    [
        (["c", "a", "b"], None, ["a", "b", "c"]),
        (["a", "b", "c"], "a", ["b", "c", "a"]),
        (["a", "b", "c"], "c", ["a", "b", "c"]),
        (["a", "c"], "b", ["c", "a"]),  # the last one read has no work now
        ([], "b", []),
    ],
)
def test_topics_are_read_in_turn_after_the_last_one_read(
    names: list[str], last: str | None, expected: list[str]
) -> None:
    assert in_turn(names, last) == expected


# -- which topics, and when to look again ----------------------------------------------------


@dataclass
class TwinRegistry:
    """The registry's rules (``workers.state.topics._REGISTER``) in memory."""

    marks: dict[str, str] = field(default_factory=dict)
    since: int | None = None
    calls: int = 0

    def register(self, found: Sequence[str], now_ms: int, *, drop: bool = True) -> Registered:
        self.calls += 1
        first = self.since is None
        self.since = self.since or now_ms
        added = tuple(t for t in found if t not in self.marks)
        for t in added:
            self.marks[t] = "initial" if first else str(now_ms)
        gone = tuple(sorted(t for t in self.marks if t not in found)) if drop else ()
        for t in gone:
            del self.marks[t]
        return Registered({t: self.marks[t] == "initial" for t in found}, added, gone)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def source_for(pipeline: PipelineConfig, log: MemoryLog) -> tuple[TopicSource, TwinRegistry, Clock]:
    registry, clock = TwinRegistry(), Clock()
    made = TopicSource(pipeline, MemoryConsumer(log), registry, exclude={"alarms.dlq"},  # type: ignore[arg-type]
                       clock=clock, wall_ms=lambda: int(clock.now * 1000))  # fmt: skip
    return made, registry, clock


def test_topics_found_at_first_start_at_start_and_later_ones_at_new_topic_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = MemoryLog()
    for name in ("alarm-a", "alarm-b", "other", "alarms.dlq"):
        log.create_topic(name, 1)
    pipeline = settings(topic_pattern="alarm-.*", start="latest", topics_refresh_seconds=10)
    source, registry, clock = source_for(pipeline, log)
    caplog.set_level(logging.INFO, logger="workers.pulling.topics")

    first = source.current()
    log.create_topic("alarm-c", 1)
    cached = source.current()  # within the refresh interval: no new look
    clock.now += 10
    later = source.current()

    latest, earliest = StartPolicy("latest"), StartPolicy("earliest")
    assert first == cached == [Topic("alarm-a", latest), Topic("alarm-b", latest)]
    assert later == [*first, Topic("alarm-c", earliest)]
    assert registry.calls == 2
    found = [r.getMessage() for r in caplog.records]
    assert found == ["pipeline alarms: found topic alarm-c on cluster common; where nothing is "
                     "stored, its partitions start at earliest"]  # fmt: skip


def test_a_pipeline_that_found_nothing_at_first_still_starts_later_topics_at_new_topic_start(
) -> None:  # fmt: skip
    log = MemoryLog()
    source, _, clock = source_for(settings(topic_pattern="alarm-.*", start="latest"), log)

    assert source.current() == []
    log.create_topic("alarm-a", 1)
    clock.now += 30

    assert source.current() == [Topic("alarm-a", StartPolicy("earliest"))]


def test_a_deleted_topic_is_dropped_and_said_and_a_stale_look_is_looked_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = MemoryLog()
    log.create_topic("alarm-a", 1)
    log.create_topic("alarm-b", 1)
    source, registry, _ = source_for(settings(topic_pattern="alarm-.*"), log)
    source.current()

    log.delete_topic("alarm-b")
    still_cached = source.current()
    source.stale()
    fresh = source.current()

    assert [t.name for t in still_cached] == ["alarm-a", "alarm-b"]
    assert [t.name for t in fresh] == ["alarm-a"] and set(registry.marks) == {"alarm-a"}
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert caplog.records[0].getMessage() == (
        "pipeline alarms: topic alarm-b is gone from cluster common and is no longer read "
        "(its stored offsets are kept)"
    )


def test_a_listed_topic_that_does_not_exist_is_said_once_and_read_once_created(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = MemoryLog()
    log.create_topic("a", 1)
    source, _, clock = source_for(settings(topics=["a", "b"], topics_refresh_seconds=1), log)

    looks = []
    for _ in range(3):
        looks.append([t.name for t in source.current()])
        clock.now += 1
    log.create_topic("b", 1)
    looks.append([t.name for t in source.current()])

    assert looks == [["a"], ["a"], ["a"], ["a", "b"]]
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert said == ["pipeline alarms: topic b does not exist on cluster common; it is read "
                    "once created"]  # fmt: skip


# -- which topics have work ---------------------------------------------------------------


@dataclass
class TwinProbe:
    books_of: dict[Space, dict[int, Books]]

    def books(self, spaces: Mapping[Space, Sequence[int]]) -> dict[Space, dict[int, Books]]:
        return {s: {p: self.books_of[s][p] for p in parts} for s, parts in spaces.items()}


def space(topic: str) -> Space:
    return Space("w", "common", "workers", topic)


@pytest.mark.parametrize(
    ("stored", "in_flight", "end", "idle"),
    [
        (5, 0, 5, True),
        (4, 0, 5, False),  # records to read
        (None, 0, 0, False),  # nothing stored: the start policy places it
        (5, 1, 5, False),  # a batch in flight may need a re-drive
        (6, 0, 5, False),  # past the log end: the cycle repairs it
    ],
)
def test_a_partition_is_idle_only_at_its_log_end_with_nothing_in_flight(
    stored: int | None, in_flight: int, end: int, idle: bool
) -> None:
    log = MemoryLog()
    log.create_topic("t", 2)
    for _ in range(3):
        log.append("t", 0, b"x")
    for _ in range(end):
        log.append("t", 1, b"x")
    probe = TwinProbe({space("t"): {0: Books(3, 0), 1: Books(stored, in_flight)}})

    found = busy(probe, MemoryConsumer(log), {space("t"): [0, 1]})  # type: ignore[arg-type]

    assert found == (set() if idle else {space("t")})


# -- the cycle over the topics -------------------------------------------------------------


@dataclass
class TwinPuller:
    """A topic's puller: says what it was given and returns a summary of ``records``."""

    pipeline: PipelineConfig
    records: int = 0
    missing: bool = False
    released: bool = False

    @property
    def space(self) -> Space:
        return space(self.pipeline.topic)

    def cycle(self) -> Summary:
        if self.missing:
            raise TopicMissing(self.pipeline.topic)
        return Summary(self.pipeline.name, records=self.records, stopped_by="caught_up")

    def release(self, leave: bool = True) -> None:
        self.released = True


class World:
    def __init__(self, names: dict[str, int], **pipeline: Any) -> None:
        self.log = MemoryLog()
        books: dict[Space, dict[int, Books]] = {}
        for name, unread in names.items():
            self.log.create_topic(name, 1)
            for _ in range(3):
                self.log.append(name, 0, b"x")
            books[space(name)] = {0: Books(3 - unread, 0)}
        self.pipeline = settings(topic_pattern="t.*", **pipeline)
        self.source, _, self.clock = source_for(self.pipeline, self.log)
        self.made: list[TwinPuller] = []
        self.missing: set[str] = set()
        self.records = 0
        self.after: list[str] = []
        self.fanout = Fanout(
            self.pipeline, source=self.source, probe=TwinProbe(books),  # type: ignore[arg-type]
            consumer=MemoryConsumer(self.log), make=self.make, space_of=space,  # type: ignore[arg-type]
            after=lambda p, s: self.after.append(p.pipeline.topic), clock=self.clock,
        )  # fmt: skip

    def make(self, config: PipelineConfig) -> Any:
        self.clock.now += 0.4  # each topic's cycle takes 0.4 s
        made = TwinPuller(config, self.records, config.topic in self.missing)
        self.made.append(made)
        return made


def test_only_topics_with_work_are_read_each_narrowed_to_one_topic_and_released() -> None:
    world = World({"t1": 2, "t2": 0, "t3": 1, "t4": 0}, start="latest")
    world.records = 7

    out = world.fanout.cycle()

    assert [p.pipeline.topic for p in world.made] == ["t1", "t3"]
    one = world.made[0].pipeline
    latest = StartPolicy("latest")
    assert (one.topics, one.topic_pattern, one.multi, one.start) == ((), "", False, latest)
    assert all(p.released for p in world.made) and world.after == ["t1", "t3"]
    assert (out.topics, out.idle, out.records, out.stopped_by) == (4, 2, 14, "done")
    doc = out.as_dict()
    assert (doc["records"], sorted(doc["read"]), doc["read"]["t1"]["records"]) == (
        14, ["t1", "t3"], 7)  # fmt: skip


def test_a_cycle_cut_short_by_time_goes_on_next_time_from_the_topic_after_the_last_read() -> None:
    world = World({f"t{i}": 1 for i in range(6)}, max_seconds=1.0)

    first = world.fanout.cycle()
    second = world.fanout.cycle()

    assert list(first.cycles) == ["t0", "t1", "t2"] and first.stopped_by == "max_seconds"
    assert list(second.cycles) == ["t3", "t4", "t5"]
    # each topic's cycle gets what is left of the pipeline's time
    assert [round(p.pipeline.max_seconds, 1) for p in world.made[:3]] == [1.0, 0.6, 0.2]


def test_records_left_bound_each_topic_and_end_the_cycle() -> None:
    world = World({"t1": 1, "t2": 1, "t3": 1}, max_records=500, batch_size=400)
    world.records = 300

    out = world.fanout.cycle()

    assert [(p.pipeline.max_records, p.pipeline.batch_size) for p in world.made] == [
        (500, 400), (200, 200)]  # fmt: skip
    assert out.records == 600 and out.stopped_by == "max_records"


def test_a_topic_gone_mid_cycle_is_skipped_and_the_topics_looked_up_again() -> None:
    world = World({"t1": 1, "t2": 1})
    world.missing = {"t1"}

    out = world.fanout.cycle()

    assert list(out.cycles) == ["t2"] and world.after == ["t2"]
    assert topics._LOOKS == {}  # stale: the next cycle looks again


def test_all_idle_reads_nothing() -> None:
    world = World({"t1": 0, "t2": 0})

    out = world.fanout.cycle()

    assert world.made == [] and (out.idle, out.stopped_by, out.records) == (2, "idle", 0)
    assert FanoutSummary("p").as_dict()["read"] == {}


class ForgetfulConsumer(MemoryConsumer):
    """``end_offsets`` raises ``KeyError`` (as kafka-python does for partitions its metadata
    lost) the first ``forget`` times, and until ``topics()`` has been asked since."""

    def __init__(self, log: MemoryLog, forget: int) -> None:
        super().__init__(log)
        self.forget = forget
        self.looks = 0

    def topics(self) -> set[str]:
        self.looks += 1
        return super().topics()

    def end_offsets(self, partitions: Any) -> dict[Any, int]:
        if self.forget:
            self.forget -= 1
            raise KeyError(next(iter(partitions)))
        return super().end_offsets(partitions)


def test_log_ends_lost_from_the_metadata_are_asked_again_after_reading_every_topic() -> None:
    log = MemoryLog()
    log.create_topic("t", 1)
    probe = TwinProbe({space("t"): {0: Books(0, 0)}})
    once, twice = ForgetfulConsumer(log, 1), ForgetfulConsumer(log, 2)

    found = busy(probe, once, {space("t"): [0]})  # type: ignore[arg-type]
    with pytest.raises(RecoverableError, match="no log end for TopicPartition"):
        busy(probe, twice, {space("t"): [0]})  # type: ignore[arg-type]

    assert (found, once.looks, twice.looks) == (set(), 1, 1)
