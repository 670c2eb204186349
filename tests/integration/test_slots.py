"""Consumer slots on a real Redis: claim, renew, hand-over, release, mark_pending and TTLs."""

from __future__ import annotations

import time

import pytest
import redis

from workers.state.keys import Space
from workers.state.slots import PENDING, Slots

A, B, C = "token-a", "token-b", "token-c"


@pytest.fixture
def space(key_prefix: str) -> Space:
    return Space(key_prefix, "c", "g", "t")


@pytest.fixture
def slots(redis_client: redis.Redis, space: Space) -> Slots:
    return Slots(redis_client, space, ttl=30, pending_ttl=60)


def test_claim_takes_a_free_slot(slots: Slots) -> None:
    # Arrange
    before = slots.holder(0)

    # Act
    claimed = slots.claim(0, A)

    # Assert
    assert (before, claimed, slots.holder(0)) == (None, True, A)


def test_another_token_cannot_claim_a_held_slot(slots: Slots) -> None:
    # Arrange
    slots.claim(0, A)

    # Act
    claimed = slots.claim(0, B)

    # Assert
    assert claimed is False
    assert slots.holder(0) == A


def test_holder_renews_by_claiming_again(
    slots: Slots, redis_client: redis.Redis, space: Space
) -> None:
    # Arrange
    key = space.key("slot", 0)
    slots.claim(0, A)
    redis_client.pexpire(key, 1000)

    # Act
    renewed = slots.claim(0, A)

    # Assert
    assert renewed is True
    assert slots.holder(0) == A
    assert 29_000 < redis_client.pttl(key) <= 30_000


def test_hand_over_makes_the_slot_pending_and_any_token_may_claim_it(
    slots: Slots, redis_client: redis.Redis, space: Space
) -> None:
    # Arrange
    slots.claim(0, A)

    # Act
    handed = slots.hand_over(0, A)
    pending = slots.holder(0)
    pending_pttl = redis_client.pttl(space.key("slot", 0))
    claimed = slots.claim(0, B)

    # Assert
    assert handed is True
    assert pending is not None and pending.startswith(PENDING) and pending.startswith("pending:")
    assert len(pending) == len("pending:") + 32
    assert 59_000 < pending_pttl <= 60_000
    assert claimed is True
    assert slots.holder(0) == B
    assert 29_000 < redis_client.pttl(space.key("slot", 0)) <= 30_000


def test_hand_over_of_the_previous_holder_is_refused(slots: Slots) -> None:
    # Arrange
    slots.claim(0, A)
    slots.hand_over(0, A)
    slots.claim(0, B)

    # Act
    handed = slots.hand_over(0, A)

    # Assert
    assert handed is False
    assert slots.holder(0) == B


def test_hand_over_of_a_free_slot_is_refused(slots: Slots) -> None:
    # Act
    handed = slots.hand_over(0, A)

    # Assert
    assert handed is False
    assert slots.holder(0) is None


def test_release_by_a_non_holder_does_nothing(slots: Slots) -> None:
    # Arrange
    slots.claim(0, A)

    # Act
    released = slots.release(0, B)

    # Assert
    assert released is False
    assert slots.holder(0) == A


def test_release_by_the_holder_frees_the_slot(slots: Slots) -> None:
    # Arrange
    slots.claim(0, A)

    # Act
    released = slots.release(0, A)

    # Assert
    assert released is True
    assert slots.holder(0) is None
    assert slots.claim(0, B) is True


def test_release_of_a_pending_slot_by_its_former_holder_does_nothing(slots: Slots) -> None:
    # Arrange
    slots.claim(0, A)
    slots.hand_over(0, A)
    pending = slots.holder(0)

    # Act
    released = slots.release(0, A)

    # Assert
    assert released is False
    assert slots.holder(0) == pending


def test_mark_pending_on_a_free_slot(slots: Slots, redis_client: redis.Redis, space: Space) -> None:
    # Act
    marked = slots.mark_pending(0)

    # Assert
    assert marked is True
    holder = slots.holder(0)
    assert holder is not None and holder.startswith("pending:")
    assert 59_000 < redis_client.pttl(space.key("slot", 0)) <= 60_000


def test_mark_pending_is_refused_while_the_slot_is_held(slots: Slots) -> None:
    # Arrange
    slots.claim(0, A)

    # Act
    marked = slots.mark_pending(0)

    # Assert
    assert marked is False
    assert slots.holder(0) == A


def test_mark_pending_is_refused_while_the_slot_is_pending(slots: Slots) -> None:
    # Arrange
    slots.mark_pending(0)
    pending = slots.holder(0)

    # Act
    marked = slots.mark_pending(0)

    # Assert
    assert marked is False
    assert slots.holder(0) == pending


def test_a_token_may_claim_a_slot_the_supervisor_marked_pending(slots: Slots) -> None:
    # Arrange
    slots.mark_pending(0)

    # Act
    claimed = slots.claim(0, C)

    # Assert
    assert claimed is True
    assert slots.holder(0) == C


def test_a_claimed_slot_frees_itself_after_its_ttl(redis_client: redis.Redis, space: Space) -> None:
    # Arrange
    slots = Slots(redis_client, space, ttl=0.3, pending_ttl=60)
    slots.claim(0, A)
    held = slots.holder(0)

    # Act
    time.sleep(0.5)

    # Assert
    assert held == A
    assert slots.holder(0) is None
    assert slots.claim(0, B) is True


def test_a_pending_marker_frees_itself_after_its_pending_ttl(
    redis_client: redis.Redis, space: Space
) -> None:
    # Arrange
    slots = Slots(redis_client, space, ttl=60, pending_ttl=0.3)
    slots.mark_pending(0)
    slots.claim(1, A)
    slots.hand_over(1, A)
    marked = (slots.holder(0), slots.holder(1))

    # Act
    time.sleep(0.5)

    # Assert
    assert [m is not None and m.startswith("pending:") for m in marked] == [True, True]
    assert (slots.holder(0), slots.holder(1)) == (None, None)
    assert slots.mark_pending(0) is True


def test_slots_of_different_numbers_are_independent(
    slots: Slots, redis_client: redis.Redis, space: Space
) -> None:
    # Arrange
    slots.claim(0, A)

    # Act
    other = slots.claim(1, B)
    marked = slots.mark_pending(2)
    released = slots.release(0, A)

    # Assert
    assert (other, marked, released) == (True, True, True)
    holders = [slots.holder(n) for n in range(3)]
    assert holders[:2] == [None, B]
    assert holders[2] is not None and holders[2].startswith("pending:")
    assert sorted(k.decode() for k in redis_client.scan_iter(match=f"{space.prefix}*")) == [
        space.key("slot", 1),
        space.key("slot", 2),
    ]


def test_slot_keys_of_other_spaces_are_independent(
    redis_client: redis.Redis, space: Space, key_prefix: str
) -> None:
    # Arrange
    mine = Slots(redis_client, space, ttl=30, pending_ttl=60)
    other = Slots(redis_client, Space(key_prefix, "c", "g", "other"), ttl=30, pending_ttl=60)
    mine.claim(0, A)

    # Act
    claimed = other.claim(0, B)

    # Assert
    assert claimed is True
    assert (mine.holder(0), other.holder(0)) == (A, B)
