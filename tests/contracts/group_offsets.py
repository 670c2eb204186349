"""One contract for Kafka's group offsets written without membership: the in-memory twin and
the real broker must agree.

Subclasses provide the fixtures ``topic`` (a topic of 2 partitions) and ``make_group(name)``
(a ``GroupOffsets`` of group ``name``, a fresh name per test being the caller's job).
"""

from __future__ import annotations

from collections.abc import Callable

from workers.kafka.group_offsets import GroupOffsets

MakeGroup = Callable[[str], GroupOffsets]
WAIT = 10.0


class GroupOffsetsContract:
    def test_a_group_with_no_commits_has_no_offsets(
        self, make_group: MakeGroup, topic: str
    ) -> None:
        assert make_group("empty").committed(topic, [0, 1], WAIT) == {}

    def test_committed_offsets_are_read_back_per_partition(
        self, make_group: MakeGroup, topic: str
    ) -> None:
        group = make_group("a")

        group.commit(topic, {0: 7}, "meta", WAIT)

        found = group.committed(topic, [0, 1], WAIT)
        assert list(found) == [0]
        assert found[0].offset == 7
        # A broker keeps the metadata or drops it; it never returns something else.
        assert found[0].metadata in ("meta", None)

    def test_a_commit_replaces_the_offset_in_either_direction(
        self, make_group: MakeGroup, topic: str
    ) -> None:
        group = make_group("b")
        group.commit(topic, {0: 10, 1: 4}, "", WAIT)

        group.commit(topic, {0: 3}, "", WAIT)

        found = group.committed(topic, [0, 1], WAIT)
        assert {p: c.offset for p, c in found.items()} == {0: 3, 1: 4}

    def test_groups_are_independent(self, make_group: MakeGroup, topic: str) -> None:
        make_group("c").commit(topic, {0: 5}, "", WAIT)

        assert make_group("d").committed(topic, [0], WAIT) == {}
        assert make_group("c").committed(topic, [0], WAIT)[0].offset == 5
