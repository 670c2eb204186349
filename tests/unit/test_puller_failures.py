"""The pull cycle when things fail: a refused hand-off (the batch stays in the ledger and is
re-driven) and bad records (dead-lettered, or the offset kept while the producer is down)."""

from __future__ import annotations

import pytest
from kafka.errors import KafkaTimeoutError

from tests.unit.pulling_world import DLQ, TOPIC, World, offsets, pipeline
from workers.exceptions import RecoverableError

# -- hand-off failures --------------------------------------------------------------------------


def test_failed_hand_off_keeps_its_batch_in_the_ledger_and_the_next_cycle_redrives_it(
    world: World,
) -> None:
    world.fill(0, 10)
    dispatcher = world.dispatcher(fail_on={3})
    puller = world.puller(dispatcher=dispatcher)

    with pytest.raises(RecoverableError, match="broker refused hand-off 3"):
        puller.cycle()
    stored_after_failure = world.stored()[0]
    retry = puller.cycle()

    assert stored_after_failure == 6
    # 0-5, then 6-8 again (re-driven at once, not at its due time), then 9.
    assert offsets(dispatcher, 0) == list(range(10))
    assert (retry.stopped_by, retry.redriven, retry.records, retry.reached) == (
        "caught_up",
        1,
        1,
        {0: 10},
    )
    assert world.stored()[0] == 10


def test_failed_hand_off_leaves_other_partitions_where_they_were_committed(world: World) -> None:
    world.fill(0, 2)
    world.fill(1, 2)
    world.fill(2, 2)
    dispatcher = world.dispatcher(fail_on={2})
    puller = world.puller(pipeline(batch_size=2), dispatcher=dispatcher)

    with pytest.raises(RecoverableError):
        puller.cycle()

    assert world.stored() == {0: 2, 1: 0, 2: 0}
    assert dispatcher.delivered == [(0, 0), (0, 1)]


# -- dead letters -------------------------------------------------------------------------------


def test_bad_records_go_to_the_dead_letter_topic_and_offsets_move_past_them(
    world: World,
) -> None:
    world.log.append(TOPIC, 0, b'{"ok": 1}')
    world.log.append(TOPIC, 0, b"[1]")
    world.log.append(TOPIC, 0, b'{"ok": 2}')
    world.log.append(TOPIC, 1, b"")  # partition 1 holds only bad records
    world.log.append(TOPIC, 1, None, key=b"gone")
    dispatcher = world.dispatcher()
    puller = world.puller(pipeline(batch_size=10), dispatcher=dispatcher)

    summary = puller.cycle()

    assert dispatcher.delivered == [(0, 0), (0, 2)]
    assert world.dead_letters() == [
        (b"0", b"1", b"value is a JSON array; expected a JSON object"),
        (b"1", b"0", b"value is empty; expected a JSON object"),
        (b"1", b"1", b"record has no value (a tombstone)"),
    ]
    assert world.stored() == {0: 3, 1: 2, 2: 0}
    assert (summary.records, summary.delivered, summary.dead_lettered) == (5, 2, 3)


def test_partition_of_only_bad_records_is_committed_without_a_hand_off(world: World) -> None:
    world.log.append(TOPIC, 2, b"not json")
    world.log.append(TOPIC, 2, b"42")
    dispatcher = world.dispatcher()
    puller = world.puller(dispatcher=dispatcher)

    summary = puller.cycle()

    assert dispatcher.attempts == 0
    assert (summary.batches, summary.dead_lettered, summary.reached) == (0, 2, {2: 2})
    assert world.stored() == {0: 0, 1: 0, 2: 2}
    assert [(p, o) for p, o, _ in world.dead_letters()] == [(b"2", b"0"), (b"2", b"1")]


def test_broken_dead_letter_producer_keeps_the_offset_before_the_bad_record(
    world: World,
) -> None:
    world.log.append(TOPIC, 0, b'{"ok": 1}')
    world.log.append(TOPIC, 0, b"[1]")
    world.log.append(TOPIC, 0, b'{"ok": 2}')
    world.producer.broken = KafkaTimeoutError("broker down")
    puller = world.puller(pipeline(batch_size=10))

    with pytest.raises(RecoverableError) as failure:
        puller.cycle()

    assert str(failure.value) == (
        "1 dead letters to 'events.dlq' failed, first events[0]@1: KafkaTimeoutError('broker down')"
    )
    assert world.stored() == {0: 0, 1: 0, 2: 0}
    assert world.dead_letters() == []


def test_next_cycle_dead_letters_the_record_once_the_producer_heals(world: World) -> None:
    world.log.append(TOPIC, 0, b'{"ok": 1}')
    world.log.append(TOPIC, 0, b"[1]")
    world.producer.broken = KafkaTimeoutError("broker down")
    dispatcher = world.dispatcher()
    puller = world.puller(pipeline(batch_size=10), dispatcher=dispatcher)
    with pytest.raises(RecoverableError):
        puller.cycle()
    stored_after_failure = world.stored()[0]
    world.producer.broken = None

    summary = puller.cycle()  # the failed letter is not resent: the record comes back instead

    assert stored_after_failure == 0
    assert dispatcher.delivered == [(0, 0)]  # nothing was handed off before the letter failed
    assert (summary.records, summary.dead_lettered, summary.reached) == (2, 1, {0: 2})
    assert world.dead_letters() == [(b"0", b"1", b"value is a JSON array; expected a JSON object")]
    assert puller.dead_letters.sent == 1


def test_value_too_large_for_the_dead_letter_topic_is_sent_empty(world: World) -> None:
    world.producer.max_request_size = 500
    world.log.append(TOPIC, 0, b"[" + b"1," * 400 + b"1]", key=b"k")
    puller = world.puller(pipeline(max_value_bytes=4096))

    summary = puller.cycle()

    [letter] = world.log.partition(DLQ, 0).records
    assert (letter.key, letter.value) == (b"k", b"")
    assert dict(letter.headers)["workers.value_dropped"] == b"803"
    assert (summary.dead_lettered, world.stored()[0]) == (1, 1)
