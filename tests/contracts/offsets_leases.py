"""One contract for the offset store and the leases: the in-memory twin and Redis must agree.

Subclasses provide the fixtures ``store`` (an OffsetStore), ``make_leases(name, ttl)`` (a
Leases owner) and ``expire(seconds)`` (let that much lease time pass).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from workers.exceptions import OffsetStoreError
from workers.state.keys import Space
from workers.state.leases import Leases
from workers.state.offsets import Checkpoint, OffsetStore, Position

MakeLeases = Callable[..., Leases]
TTL = 0.5


class OffsetStoreContract:
    @pytest.fixture
    def space(self, request: pytest.FixtureRequest) -> Space:
        return Space(f"contract-{id(request.node)}", "common", "g1", "topic-a")

    def _hold(self, leases: Leases, space: Space, partitions: list[int]) -> dict[int, int]:
        grant = leases.acquire(space, partitions)
        return {lease.partition: lease.epoch for lease in grant.leases}

    # -- offsets ------------------------------------------------------------------------------

    def test_nothing_stored_reads_as_none_generation_zero(
        self, store: OffsetStore, space: Space
    ) -> None:
        assert store.read(space, [0, 1]) == {0: Position(None, 0), 1: Position(None, 0)}
        assert store.stored(space) == {}

    def test_commit_without_lease_is_refused(self, store: OffsetStore, space: Space) -> None:
        out = store.commit(space, "nobody", [Checkpoint(0, 10, 1, 0)])

        assert out[0].status == "not_owner"
        assert store.read(space, [0])[0].offset is None

    def test_init_writes_once_then_reports_exists(
        self, store: OffsetStore, make_leases: MakeLeases, space: Space
    ) -> None:
        a = make_leases("a")
        epochs = self._hold(a, space, [0])

        first = store.commit(space, a.token, [Checkpoint(0, 5, epochs[0], 0)], mode="init")
        second = store.commit(space, a.token, [Checkpoint(0, 9, epochs[0], 0)], mode="init")

        assert (first[0].status, first[0].stored) == ("written", 5)
        assert (second[0].status, second[0].stored) == ("exists", 5)

    def test_offsets_only_move_forward(
        self, store: OffsetStore, make_leases: MakeLeases, space: Space
    ) -> None:
        a = make_leases("a")
        e = self._hold(a, space, [0])[0]

        forward = store.commit(space, a.token, [Checkpoint(0, 100, e, 0)])
        back = store.commit(space, a.token, [Checkpoint(0, 50, e, 0)])
        same = store.commit(space, a.token, [Checkpoint(0, 100, e, 0)])

        assert [forward[0].status, back[0].status, same[0].status] == [
            "written",
            "backwards",
            "unchanged",
        ]
        assert back[0].stored == 100
        assert store.read(space, [0])[0] == Position(100, 0)

    def test_positions_are_per_partition(
        self, store: OffsetStore, make_leases: MakeLeases, space: Space
    ) -> None:
        a = make_leases("a")
        e = self._hold(a, space, [0, 1, 2])

        store.commit(space, a.token, [Checkpoint(0, 7, e[0], 0), Checkpoint(2, 3, e[2], 0)])

        assert store.stored(space) == {0: Position(7, 0), 2: Position(3, 0)}
        assert store.read(space, [1])[1].offset is None

    def test_one_call_reports_each_partition(
        self, store: OffsetStore, make_leases: MakeLeases, space: Space
    ) -> None:
        a, b = make_leases("a"), make_leases("b")
        ea = self._hold(a, space, [0])
        self._hold(b, space, [1])

        out = store.commit(space, a.token, [Checkpoint(0, 4, ea[0], 0), Checkpoint(1, 4, 1, 0)])

        assert {p: o.status for p, o in out.items()} == {0: "written", 1: "not_owner"}

    def test_commit_refused_after_lease_expiry_and_takeover(
        self,
        store: OffsetStore,
        make_leases: MakeLeases,
        space: Space,
        expire: Callable[[float], None],
    ) -> None:
        a, b = make_leases("a", ttl=TTL), make_leases("b", ttl=TTL)
        ea = self._hold(a, space, [0])
        expire(TTL * 1.5)
        eb = self._hold(b, space, [0])

        late = store.commit(space, a.token, [Checkpoint(0, 50, ea[0], 0)])
        fresh = store.commit(space, b.token, [Checkpoint(0, 40, eb[0], 0)])

        assert late[0].status == "not_owner"
        assert fresh[0].status == "written"
        assert eb[0] > ea[0]

    def test_stale_epoch_is_fenced_even_for_the_same_owner(
        self,
        store: OffsetStore,
        make_leases: MakeLeases,
        space: Space,
        expire: Callable[[float], None],
    ) -> None:
        a = make_leases("a", ttl=TTL)
        old = self._hold(a, space, [0])[0]
        expire(TTL * 1.5)
        new = self._hold(a, space, [0])[0]

        stale = store.commit(space, a.token, [Checkpoint(0, 10, old, 0)])
        current = store.commit(space, a.token, [Checkpoint(0, 10, new, 0)])

        assert stale[0].status == "fenced"
        assert current[0].status == "written"

    def test_reset_wins_over_a_pull_that_started_before_it(
        self, store: OffsetStore, make_leases: MakeLeases, space: Space
    ) -> None:
        a = make_leases("a")
        e = self._hold(a, space, [0, 1])
        store.commit(space, a.token, [Checkpoint(0, 100, e[0], 0), Checkpoint(1, 100, e[1], 0)])
        generation = store.read(space, [0])[0].generation

        before = store.reset(space, {0: 20})
        stale = store.commit(space, a.token, [Checkpoint(0, 150, e[0], generation)])
        other = store.commit(space, a.token, [Checkpoint(1, 150, e[1], 0)])

        assert before == {0: Position(100, 0)}
        assert stale[0].status == "reset"
        assert other[1].status == "written"  # partition 1 was not reset
        assert store.read(space, [0])[0] == Position(20, 1)
        after = store.commit(space, a.token, [Checkpoint(0, 30, e[0], 1)])
        assert after[0].status == "written"

    def test_repair_moves_backwards_but_stays_fenced(
        self, store: OffsetStore, make_leases: MakeLeases, space: Space
    ) -> None:
        a = make_leases("a")
        e = self._hold(a, space, [0])[0]
        store.commit(space, a.token, [Checkpoint(0, 500, e, 0)])

        repaired = store.commit(space, a.token, [Checkpoint(0, 10, e, 0)], mode="repair")
        stranger = store.commit(space, "other", [Checkpoint(0, 5, e, 0)], mode="repair")

        assert repaired[0].status == "written"
        assert stranger[0].status == "not_owner"
        assert store.read(space, [0])[0].offset == 10

    def test_negative_offsets_are_refused(
        self, store: OffsetStore, make_leases: MakeLeases, space: Space
    ) -> None:
        a = make_leases("a")
        e = self._hold(a, space, [0])[0]

        with pytest.raises(OffsetStoreError):
            store.commit(space, a.token, [Checkpoint(0, -1, e, 0)])
        with pytest.raises(OffsetStoreError):
            store.reset(space, {0: -5})

    def test_skipped_records_are_counted_per_partition(
        self, store: OffsetStore, space: Space
    ) -> None:
        store.count_skipped(space, 1, 40)
        store.count_skipped(space, 1, 2)
        store.count_skipped(space, 0, 7)

        assert store.skipped(space) == {0: 7, 1: 42}

    def test_spaces_do_not_share_positions(
        self, store: OffsetStore, make_leases: MakeLeases, space: Space
    ) -> None:
        other = Space(space.prefix, space.cluster, "g2", space.topic)
        a = make_leases("a")
        e = self._hold(a, space, [0])[0]

        store.commit(space, a.token, [Checkpoint(0, 9, e, 0)])

        assert store.read(other, [0])[0].offset is None

    # -- leases -------------------------------------------------------------------------------

    def test_a_partition_has_one_owner(self, make_leases: MakeLeases, space: Space) -> None:
        a, b = make_leases("a"), make_leases("b")

        got_a = a.acquire(space, [0, 1, 2])
        got_b = b.acquire(space, [0, 1, 2])

        assert got_a.partitions == [0, 1, 2]
        assert got_b.partitions == []

    def test_owners_converge_to_fair_shares(self, make_leases: MakeLeases, space: Space) -> None:
        owners = [make_leases(n) for n in "abc"]
        parts = list(range(6))

        for _ in range(3):  # each acquire also gives up what is above the fair share
            grants = [o.acquire(space, parts) for o in owners]

        held = sorted(p for g in grants for p in g.partitions)
        assert held == parts
        assert [len(g.leases) for g in grants] == [2, 2, 2]
        assert {g.share for g in grants} == {2}

    def test_want_caps_what_one_owner_takes(self, make_leases: MakeLeases, space: Space) -> None:
        a = make_leases("a")

        grant = a.acquire(space, [0, 1, 2, 3], want=1)

        assert len(grant.leases) == 1

    def test_renew_keeps_held_leases_and_drops_lost_ones(
        self, make_leases: MakeLeases, space: Space, expire: Callable[[float], None]
    ) -> None:
        a, b = make_leases("a", ttl=TTL), make_leases("b", ttl=TTL)
        held = a.acquire(space, [0]).leases

        kept = a.renew(space, held)
        expire(TTL * 1.5)
        b.acquire(space, [0])
        lost = a.renew(space, held)

        assert [x.partition for x in kept] == [0]
        assert lost == []

    def test_release_only_deletes_own_leases(self, make_leases: MakeLeases, space: Space) -> None:
        a, b = make_leases("a"), make_leases("b")
        held = a.acquire(space, [0, 1]).leases

        assert b.release(space, held) == 0
        assert set(a.holders(space, [0, 1])) == {0, 1}
        assert a.release(space, held) == 2
        assert b.acquire(space, [0, 1]).partitions == [0, 1]

    def test_expired_lease_is_taken_over(
        self, make_leases: MakeLeases, space: Space, expire: Callable[[float], None]
    ) -> None:
        a, b = make_leases("a", ttl=TTL), make_leases("b", ttl=TTL)
        a.acquire(space, [0, 1])

        expire(TTL * 1.5)

        assert b.acquire(space, [0, 1]).partitions == [0, 1]

    def test_holders_show_who_and_until_when(self, make_leases: MakeLeases, space: Space) -> None:
        a = make_leases("a", task="task-123")
        grant = a.acquire(space, [0, 1])

        holders = a.holders(space, [0, 1, 2])

        assert set(holders) == {0, 1}
        h = holders[0]
        assert (h.token, h.task, h.epoch) == (a.token, "task-123", grant.leases[0].epoch)
        assert h.host and h.pid > 0 and h.since_ms > 0
        assert 0 < h.expires_in <= 30
