"""Unit tests of ``workers.ops.resetplan``: reset plans as CSV, written by ``--export`` and read
by ``--from-file``, in kafka-consumer-groups' form; every kind of bad line."""

from __future__ import annotations

import io

import pytest

from workers.ops.resetplan import MAX_PLAN_BYTES, PlanError, export_plan, parse_plan, read_plan_text

TOPIC, GROUP, PARTS = "events", "workers", [0, 1, 2]


def parse(text: str) -> dict[int, int]:
    return parse_plan(text, "plan.csv", TOPIC, GROUP, PARTS)


def test_export_writes_topic_partition_offset_lines_in_partition_order() -> None:
    assert export_plan(TOPIC, [(2, 7), (0, 10), (1, 0)]) == (
        "events,0,10\nevents,1,0\nevents,2,7\n"
    )


def test_an_exported_plan_reads_back_as_the_same_offsets() -> None:
    offsets = {0: 10, 1: 0, 2: 2**53}

    assert parse(export_plan(TOPIC, offsets.items())) == offsets


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("events,0,5\nevents,2,9\n", id="kafka-consumer-groups"),
        pytest.param("events,0,5\r\nevents,2,9\r\n", id="crlf"),
        pytest.param("\nevents,0,5\n\n  \nevents,2,9", id="blank-lines-no-final-newline"),
        pytest.param("topic,partition,offset\nevents,0,5\nevents,2,9\n", id="header"),
        pytest.param("workers,events,0,5\nworkers,events,2,9\n", id="with-group"),
        pytest.param("group,topic,partition,offset\nworkers,events,0,5\nevents,2,9\n",
                     id="group-header-and-mixed-forms"),
        pytest.param(" events , 0 , 5 \nevents,\t2,9\n", id="spaces-around-fields"),
        pytest.param("events,0,005\nevents,2,9\n", id="leading-zeros"),
    ],
)  # fmt: skip
def test_plans_kafka_consumer_groups_writes_are_read(text: str) -> None:
    assert parse(text) == {0: 5, 2: 9}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("events,0,5\nevents,0\n", "plan.csv line 2: 2 field(s) in 'events,0'; expected "
         "topic,partition,offset (or group,topic,partition,offset)"),
        ("events,0,5,6,7\n", "plan.csv line 1: 5 field(s)"),
        ("other,0,5\n", "plan.csv line 1: topic 'other' is not the pipeline's topic 'events'"),
        ("Events,0,5\n", "line 1: topic 'Events' is not the pipeline's topic"),
        ("ops,events,0,5\n", "plan.csv line 1: group 'ops' is not the pipeline's group "
         "'workers'"),
        ("events,3,5\n", "plan.csv line 1: 'events' has no partition 3 (it has partitions 0-2)"),
        ("events,-1,5\n", "line 1: partition '-1' is not a partition number"),
        ("events,x,5\n", "line 1: partition 'x' is not a partition number"),
        ("events,,5\n", "line 1: partition '' is not a partition number"),
        ("events,0,-1\n", "line 1: offset '-1' is not an offset (an integer from 0 to "
         "9007199254740992)"),
        ("events,0,1.5\n", "line 1: offset '1.5' is not an offset"),
        ("events,0,\n", "line 1: offset '' is not an offset"),
        ("events,0,9007199254740993\n", "line 1: offset '9007199254740993' is not an offset"),
        ("events,0," + "9" * 200 + "\n", "is not an offset"),
        ("events,0,١\n", "line 1: offset '١' is not an offset"),
        ("events,0,5\nevents,1,5\nevents,0,6\n", "plan.csv line 3: partition 0 again (first "
         "on line 1)"),
        ("events,0,5\ntopic,partition,offset\n", "line 2: topic 'topic' is not the pipeline's"),
    ],
)  # fmt: skip
def test_a_bad_line_is_named_in_one_line(text: str, says: str) -> None:
    # Act
    with pytest.raises(PlanError) as info:
        parse(text)

    # Assert
    assert says in str(info.value) and "\n" not in str(info.value)


def test_the_first_bad_line_is_named_and_the_others_counted() -> None:
    with pytest.raises(PlanError) as info:
        parse("events,0,5\nevents,9,1\nevents,1,x\nother,2,3\n")

    assert str(info.value) == (
        "plan.csv line 2: 'events' has no partition 9 (it has partitions 0-2) "
        "(and 2 more bad line(s))"
    )


@pytest.mark.parametrize("text", ["", "\n\n", "topic,partition,offset\n"])
def test_a_plan_without_offsets_is_refused(text: str) -> None:
    with pytest.raises(PlanError, match="plan.csv holds no offsets"):
        parse(text)


def test_a_partition_of_a_one_partition_topic_says_so() -> None:
    with pytest.raises(PlanError, match=r"has no partition 1 \(it has only partition 0\)"):
        parse_plan("events,1,5\n", "plan.csv", TOPIC, GROUP, [0])


def test_plan_text_is_utf_8_with_an_optional_byte_order_mark() -> None:
    text = read_plan_text(io.BytesIO(b"\xef\xbb\xbfevents,0,5\n"), "plan.csv")

    assert parse(text) == {0: 5}


def test_plan_text_that_is_not_utf_8_names_its_line() -> None:
    with pytest.raises(PlanError) as info:
        read_plan_text(io.BytesIO(b"events,0,5\nevents,1,\xff\n"), "plan.csv")

    assert str(info.value) == "plan.csv line 2: not UTF-8 text (byte 20)"


def test_plan_text_larger_than_any_plan_is_refused_unread() -> None:
    with pytest.raises(PlanError, match="is larger than 16,777,216 bytes"):
        read_plan_text(io.BytesIO(b"x" * (MAX_PLAN_BYTES + 1)), "plan.csv")
