"""One contract for the consumer seam: ``MemoryConsumer`` and a real ``KafkaConsumer`` must agree.

Subclasses provide the fixtures ``make_topic(partitions)``, ``append(topic, partition, value,
key=None, headers=())`` (returns the record's offset; one record per batch on a real broker),
``consumer()`` (a fresh Consumer, closed at teardown), ``now_ms()`` (the clock record timestamps
come from) and ``pause(seconds)`` (let that much time pass).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from kafka import TopicPartition

from workers.kafka.consumer import Consumer

MakeTopic = Callable[[int], str]
Append = Callable[..., int]
MakeConsumer = Callable[[], Consumer]
Clock = Callable[[], int]
Pause = Callable[[float], None]

POLL_MS = 500
DEADLINE_S = 30.0


def _polls(
    consumer: Consumer, expected: int, max_records: int | None = None
) -> Iterator[Mapping[TopicPartition, Sequence[Any]]]:
    """Yield each non-empty poll until ``expected`` records came back or the deadline passed.

    A real broker may answer the first polls empty while it fetches; the twin never does.
    """
    seen = 0
    deadline = time.monotonic() + DEADLINE_S
    while seen < expected and time.monotonic() < deadline:
        got = consumer.poll(timeout_ms=POLL_MS, max_records=max_records)
        if got:
            seen += sum(len(records) for records in got.values())
            yield got


def poll_all(
    consumer: Consumer, expected: int, max_records: int | None = None
) -> dict[TopicPartition, list[Any]]:
    """Poll until ``expected`` records arrived (30 s at most); the records per partition."""
    out: dict[TopicPartition, list[Any]] = {}
    for got in _polls(consumer, expected, max_records):
        for tp, records in got.items():
            out.setdefault(tp, []).extend(records)
    assert sum(len(r) for r in out.values()) == expected, out
    return out


def _assign_from(consumer: Consumer, tps: Sequence[TopicPartition], offset: int = 0) -> None:
    consumer.assign(list(tps))
    for tp in tps:
        consumer.seek(tp, offset)


class ConsumerContract:
    # -- metadata and offsets -----------------------------------------------------------------

    def test_partitions_for_topic_lists_every_partition(
        self, make_topic: MakeTopic, consumer: MakeConsumer
    ) -> None:
        topic = make_topic(3)

        partitions = consumer().partitions_for_topic(topic)

        assert partitions == {0, 1, 2}

    def test_beginning_and_end_offsets_of_a_fresh_topic(
        self, make_topic: MakeTopic, append: Append, consumer: MakeConsumer
    ) -> None:
        topic = make_topic(2)
        offsets = [append(topic, 0, f"v{i}".encode()) for i in range(4)]
        full, empty = TopicPartition(topic, 0), TopicPartition(topic, 1)
        c = consumer()

        beginning = c.beginning_offsets([full, empty])
        end = c.end_offsets([full, empty])

        assert offsets == [0, 1, 2, 3]
        assert dict(beginning) == {full: 0, empty: 0}
        assert dict(end) == {full: offsets[-1] + 1, empty: 0}

    # -- reading ------------------------------------------------------------------------------

    def test_poll_returns_records_in_offset_order_with_their_fields(
        self, make_topic: MakeTopic, append: Append, consumer: MakeConsumer
    ) -> None:
        topic = make_topic(1)
        tp = TopicPartition(topic, 0)
        append(topic, 0, b"first", key=b"k1", headers=[("h", b"x"), ("h", b"y")])
        append(topic, 0, b"second")
        append(topic, 0, b"third", key=b"k3", headers=[("trace", b"")])
        c = consumer()
        _assign_from(c, [tp])

        records = poll_all(c, 3)[tp]

        assert [r.offset for r in records] == [0, 1, 2]
        assert [(r.topic, r.partition) for r in records] == [(topic, 0)] * 3
        assert [r.key for r in records] == [b"k1", None, b"k3"]
        assert [r.value for r in records] == [b"first", b"second", b"third"]
        assert [list(r.headers) for r in records] == [
            [("h", b"x"), ("h", b"y")],
            [],
            [("trace", b"")],
        ]
        assert all(type(r.timestamp) is int and r.timestamp > 0 for r in records)

    def test_poll_respects_max_records(
        self, make_topic: MakeTopic, append: Append, consumer: MakeConsumer
    ) -> None:
        topic = make_topic(1)
        tp = TopicPartition(topic, 0)
        for i in range(5):
            append(topic, 0, f"v{i}".encode())
        c = consumer()
        _assign_from(c, [tp])

        polls = list(_polls(c, 5, max_records=2))

        sizes = [sum(len(r) for r in got.values()) for got in polls]
        assert sum(sizes) == 5
        assert max(sizes) == 2
        assert [r.offset for got in polls for r in got[tp]] == [0, 1, 2, 3, 4]

    def test_position_after_reading_everything_is_the_end_offset(
        self, make_topic: MakeTopic, append: Append, consumer: MakeConsumer
    ) -> None:
        topic = make_topic(1)
        tp = TopicPartition(topic, 0)
        for i in range(3):
            append(topic, 0, f"v{i}".encode())
        c = consumer()
        _assign_from(c, [tp])

        poll_all(c, 3)

        assert c.position(tp) == 3
        assert c.end_offsets([tp])[tp] == 3

    def test_seek_back_reads_again(
        self, make_topic: MakeTopic, append: Append, consumer: MakeConsumer
    ) -> None:
        topic = make_topic(1)
        tp = TopicPartition(topic, 0)
        for i in range(4):
            append(topic, 0, f"v{i}".encode())
        c = consumer()
        _assign_from(c, [tp])
        poll_all(c, 4)

        c.seek(tp, 1)
        again = poll_all(c, 3)[tp]

        assert [(r.offset, r.value) for r in again] == [(1, b"v1"), (2, b"v2"), (3, b"v3")]
        assert c.position(tp) == 4

    def test_partitions_keep_their_own_records(
        self, make_topic: MakeTopic, append: Append, consumer: MakeConsumer
    ) -> None:
        topic = make_topic(3)
        tps = [TopicPartition(topic, p) for p in range(3)]
        for p, count in [(0, 2), (1, 3), (2, 1)]:
            for i in range(count):
                append(topic, p, f"p{p}-{i}".encode())
        c = consumer()
        _assign_from(c, tps)

        got = poll_all(c, 6)

        assert {tp: [(r.offset, r.value) for r in records] for tp, records in got.items()} == {
            tps[0]: [(0, b"p0-0"), (1, b"p0-1")],
            tps[1]: [(0, b"p1-0"), (1, b"p1-1"), (2, b"p1-2")],
            tps[2]: [(0, b"p2-0")],
        }
        assert all(r.partition == tp.partition for tp, rs in got.items() for r in rs)

    def test_empty_value_and_tombstone_stay_distinct(
        self, make_topic: MakeTopic, append: Append, consumer: MakeConsumer
    ) -> None:
        topic = make_topic(1)
        tp = TopicPartition(topic, 0)
        append(topic, 0, b"", key=b"empty")
        append(topic, 0, None, key=b"tombstone")
        c = consumer()
        _assign_from(c, [tp])

        records = poll_all(c, 2)[tp]

        assert [(r.key, r.value) for r in records] == [(b"empty", b""), (b"tombstone", None)]

    # -- pausing, seeking and reassigning while records are fetched ---------------------------

    def test_a_paused_partition_returns_nothing_and_resumes_at_its_position(
        self, make_topic: MakeTopic, append: Append, consumer: MakeConsumer
    ) -> None:
        topic = make_topic(2)
        a, b = TopicPartition(topic, 0), TopicPartition(topic, 1)
        for i in range(6):
            append(topic, 0, f"a{i}".encode())
            append(topic, 1, f"b{i}".encode())
        c = consumer()
        _assign_from(c, [a, b])
        got: dict[TopicPartition, list[int]] = {a: [], b: []}
        for polled in _polls(c, 12, max_records=2):  # until some of a came back
            for tp, records in polled.items():
                got[tp] += [r.offset for r in records]
            if got[a]:
                break

        c.pause(a)
        paused_at = c.position(a)
        while_paused = list(_polls(c, 6 - len(got[b])))  # the rest of b
        while_paused += [c.poll(timeout_ms=200) for _ in range(2)]  # and nothing more
        c.resume(a)
        after = list(_polls(c, 6 - len(got[a])))

        assert paused_at == len(got[a])
        assert not any(a in polled for polled in while_paused)
        for polled in while_paused + after:
            for tp, records in polled.items():
                got[tp] += [r.offset for r in records]
        assert got == {a: list(range(6)), b: list(range(6))}
        assert c.paused() == set()

    def test_seek_while_records_are_fetched_moves_the_next_record(
        self, make_topic: MakeTopic, append: Append, consumer: MakeConsumer
    ) -> None:
        topic = make_topic(1)
        tp = TopicPartition(topic, 0)
        for i in range(10):
            append(topic, 0, f"v{i}".encode())
        c = consumer()
        _assign_from(c, [tp])
        first = next(_polls(c, 10, max_records=2))[tp]  # the rest is fetched, not yet returned

        c.seek(tp, 7)
        forward = next(_polls(c, 1, max_records=1))[tp]
        c.seek(tp, 1)
        back = poll_all(c, 9)[tp]

        assert [r.offset for r in first] == list(range(len(first)))
        assert [(r.offset, r.value) for r in forward] == [(7, b"v7")]
        assert [r.offset for r in back] == list(range(1, 10))
        assert c.position(tp) == 10

    def test_reassigning_keeps_the_position_of_a_partition_that_stays(
        self, make_topic: MakeTopic, append: Append, consumer: MakeConsumer
    ) -> None:
        topic = make_topic(2)
        a, b = TopicPartition(topic, 0), TopicPartition(topic, 1)
        for i in range(3):
            append(topic, 0, f"a{i}".encode())
            append(topic, 1, f"b{i}".encode())
        c = consumer()
        _assign_from(c, [a, b])
        poll_all(c, 6)

        c.assign([a])
        append(topic, 0, b"a3")
        append(topic, 1, b"b3")
        got = poll_all(c, 1)

        assert c.assignment() == {a}
        assert {tp: [(r.offset, r.value) for r in rs] for tp, rs in got.items()} == {
            a: [(3, b"a3")]
        }
        assert c.position(a) == 4

    # -- time ---------------------------------------------------------------------------------

    def test_offsets_for_times_finds_the_first_record_at_or_after_a_time(
        self,
        make_topic: MakeTopic,
        append: Append,
        consumer: MakeConsumer,
        now_ms: Clock,
        pause: Pause,
    ) -> None:
        topic = make_topic(1)
        tp = TopicPartition(topic, 0)
        before_first = now_ms() - 1000
        append(topic, 0, b"first")
        pause(0.3)
        between = now_ms()  # taken just before sending the second record
        second = append(topic, 0, b"second")
        c = consumer()

        at_before = c.offsets_for_times({tp: before_first})[tp]
        at_between = c.offsets_for_times({tp: between})[tp]

        assert at_before is not None and at_before.offset == 0
        assert at_between is not None and at_between.offset == second == 1
        assert at_between.timestamp >= between

    def test_offsets_for_times_after_the_last_record_is_none(
        self, make_topic: MakeTopic, append: Append, consumer: MakeConsumer, now_ms: Clock
    ) -> None:
        topic = make_topic(1)
        tp = TopicPartition(topic, 0)
        append(topic, 0, b"first")
        append(topic, 0, b"last")
        after_last = now_ms() + 1000

        found = consumer().offsets_for_times({tp: after_last})

        assert dict(found) == {tp: None}
