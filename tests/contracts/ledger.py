"""One contract for the in-flight ledger: the in-memory twin and Redis must agree.

Subclasses provide the fixtures ``ledger``, ``store`` (the offset store on the same state),
``make_leases(name, ttl)`` and ``expire(seconds)`` (let that much lease time pass).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from workers.state.keys import Space
from workers.state.leases import Leases
from workers.state.ledger import Fence, Ledger, Slice
from workers.state.offsets import Checkpoint, OffsetStore

MakeLeases = Callable[..., Leases]
TTL = 0.5
MINUTE = 60_000


class LedgerContract:
    @pytest.fixture
    def space(self, request: pytest.FixtureRequest) -> Space:
        return Space(f"ledger-{id(request.node)}", "common", "g1", "topic-a")

    def _owner(
        self, make_leases: MakeLeases, store: OffsetStore, space: Space, at: dict[int, int]
    ) -> tuple[Leases, dict[int, Fence]]:
        """An owner holding ``at``'s partitions, each with that offset stored."""
        owner = make_leases("a")
        grant = owner.acquire(space, sorted(at))
        fences = {lease.partition: Fence(lease.epoch, 0) for lease in grant.leases}
        checkpoints = [Checkpoint(p, o, fences[p].epoch, 0) for p, o in at.items()]
        store.commit(space, owner.token, checkpoints, mode="init")
        return owner, fences

    def _committed(self, ledger: Ledger, space: Space, partition: int = 0) -> int | None:
        return ledger.snapshot(space, [partition]).partitions[partition].committed

    # -- record ----------------------------------------------------------------------------

    def test_a_recorded_batch_holds_the_offset_until_it_finishes(
        self, ledger: Ledger, store: OffsetStore, make_leases: MakeLeases, space: Space
    ) -> None:
        owner, fences = self._owner(make_leases, store, space, {0: 100})

        out = ledger.record(space, owner.token, fences, [Slice(0, "b1", 100, 150)], MINUTE)
        book = ledger.snapshot(space, [0]).partitions[0]

        assert (out[0].status, out[0].committed) == ("written", 100)
        assert (book.committed, book.reach, book.read_from) == (100, 150, 150)
        assert [(e.batch, e.start, e.end, e.handoffs, e.starts) for e in book.in_flight] == [
            ("b1", 100, 150, 1, 0)
        ]
        done = ledger.finish(space, [Slice(0, "b1", 100, 150)])
        assert (done[0].status, done[0].committed) == ("finished", 150)
        assert store.read(space, [0])[0].offset == 150

    def test_due_time_is_on_the_ledgers_clock(
        self, ledger: Ledger, store: OffsetStore, make_leases: MakeLeases, space: Space
    ) -> None:
        owner, fences = self._owner(make_leases, store, space, {0: 0})

        ledger.record(space, owner.token, fences, [Slice(0, "b1", 0, 5)], MINUTE)
        snap = ledger.snapshot(space, [0])

        assert MINUTE - 5_000 <= snap.partitions[0].in_flight[0].due_ms - snap.now_ms <= MINUTE

    def test_a_range_with_nothing_handed_off_commits_at_once_when_nothing_is_in_flight(
        self, ledger: Ledger, store: OffsetStore, make_leases: MakeLeases, space: Space
    ) -> None:
        owner, fences = self._owner(make_leases, store, space, {0: 10})

        out = ledger.record(space, owner.token, fences, [Slice(0, "", 10, 13)], MINUTE)

        assert (out[0].status, out[0].committed) == ("written", 13)
        assert ledger.snapshot(space, [0]).partitions[0].in_flight == ()

    def test_the_committed_offset_waits_for_the_oldest_batch(
        self, ledger: Ledger, store: OffsetStore, make_leases: MakeLeases, space: Space
    ) -> None:
        owner, fences = self._owner(make_leases, store, space, {0: 0})
        for batch, start, end in (("b1", 0, 10), ("b2", 10, 20), ("", 20, 25), ("b3", 25, 30)):
            ledger.record(space, owner.token, fences, [Slice(0, batch, start, end)], MINUTE)

        late = ledger.finish(space, [Slice(0, "b3", 25, 30)])
        middle = ledger.finish(space, [Slice(0, "b2", 10, 20)])
        first = ledger.finish(space, [Slice(0, "b1", 0, 10)])

        assert [late[0].committed, middle[0].committed, first[0].committed] == [0, 0, 30]

    def test_partitions_keep_their_own_books(
        self, ledger: Ledger, store: OffsetStore, make_leases: MakeLeases, space: Space
    ) -> None:
        owner, fences = self._owner(make_leases, store, space, {0: 0, 1: 50})
        slices = [Slice(0, "b1", 0, 4), Slice(1, "b1", 50, 52)]

        ledger.record(space, owner.token, fences, slices, MINUTE)
        ledger.finish(space, [Slice(1, "b1", 50, 52)])

        assert [self._committed(ledger, space, p) for p in (0, 1)] == [0, 52]

    def test_a_slice_must_start_where_the_books_end(
        self, ledger: Ledger, store: OffsetStore, make_leases: MakeLeases, space: Space
    ) -> None:
        owner, fences = self._owner(make_leases, store, space, {0: 0})
        ledger.record(space, owner.token, fences, [Slice(0, "b1", 0, 10)], MINUTE)

        skipping = ledger.record(space, owner.token, fences, [Slice(0, "b2", 11, 20)], MINUTE)
        overlapping = ledger.record(space, owner.token, fences, [Slice(0, "b2", 5, 20)], MINUTE)

        assert [skipping[0].status, overlapping[0].status] == ["gap", "gap"]
        assert ledger.snapshot(space, [0]).partitions[0].reach == 10

    def test_nothing_is_recorded_without_a_stored_offset(
        self, ledger: Ledger, make_leases: MakeLeases, space: Space
    ) -> None:
        owner = make_leases("a")
        lease = owner.acquire(space, [0]).leases[0]

        out = ledger.record(
            space, owner.token, {0: Fence(lease.epoch, 0)}, [Slice(0, "b", 0, 1)], 1
        )

        assert out[0].status == "missing"

    def test_record_is_refused_without_the_lease_or_after_a_takeover(
        self,
        ledger: Ledger,
        store: OffsetStore,
        make_leases: MakeLeases,
        space: Space,
        expire: Callable[[float], None],
    ) -> None:
        a = make_leases("a", ttl=TTL)
        fence = Fence(a.acquire(space, [0]).leases[0].epoch, 0)
        store.commit(space, a.token, [Checkpoint(0, 0, fence.epoch, 0)], mode="init")
        stranger = ledger.record(space, "nobody", {0: fence}, [Slice(0, "x", 0, 1)], MINUTE)
        expire(TTL * 1.5)
        b = make_leases("b", ttl=TTL)
        b.acquire(space, [0])

        late = ledger.record(space, a.token, {0: fence}, [Slice(0, "y", 0, 1)], MINUTE)

        assert [stranger[0].status, late[0].status] == ["not_owner", "not_owner"]
        assert ledger.snapshot(space, [0]).partitions[0].reach is None

    # -- finish ----------------------------------------------------------------------------

    def test_finishing_twice_or_an_unknown_batch_changes_nothing(
        self, ledger: Ledger, store: OffsetStore, make_leases: MakeLeases, space: Space
    ) -> None:
        owner, fences = self._owner(make_leases, store, space, {0: 0})
        ledger.record(space, owner.token, fences, [Slice(0, "b1", 0, 10)], MINUTE)
        ledger.record(space, owner.token, fences, [Slice(0, "b2", 10, 20)], MINUTE)

        stranger = ledger.finish(space, [Slice(0, "zz", 0, 10)])
        first = ledger.finish(space, [Slice(0, "b1", 0, 10)])
        again = ledger.finish(space, [Slice(0, "b1", 0, 10)])

        assert [(o[0].status, o[0].committed) for o in (stranger, first, again)] == [
            ("unknown", 0),
            ("finished", 10),
            ("unknown", 10),
        ]

    def test_finish_never_moves_an_offset_backwards(
        self, ledger: Ledger, store: OffsetStore, make_leases: MakeLeases, space: Space
    ) -> None:
        owner, fences = self._owner(make_leases, store, space, {0: 0})
        ledger.record(space, owner.token, fences, [Slice(0, "b1", 0, 10)], MINUTE)
        ledger.record(space, owner.token, fences, [Slice(0, "b2", 10, 20)], MINUTE)
        store.commit(space, owner.token, [Checkpoint(0, 15, fences[0].epoch, 0)])

        out = ledger.finish(space, [Slice(0, "b1", 0, 10)])

        assert out[0].committed == 15

    # -- resets and repairs ----------------------------------------------------------------

    def test_a_reset_drops_the_books_and_wins_over_late_finishes(
        self, ledger: Ledger, store: OffsetStore, make_leases: MakeLeases, space: Space
    ) -> None:
        owner, fences = self._owner(make_leases, store, space, {0: 0, 1: 0})
        slices = [Slice(0, "b1", 0, 10), Slice(1, "b1", 0, 10)]
        ledger.record(space, owner.token, fences, slices, MINUTE)

        store.reset(space, {0: 3})
        late = ledger.finish(space, slices)
        stale = ledger.record(space, owner.token, fences, [Slice(0, "b2", 3, 5)], MINUTE)
        book = ledger.snapshot(space, [0]).partitions[0]

        assert (late[0].status, late[0].committed) == ("unknown", 3)
        assert (late[1].status, late[1].committed) == ("finished", 10)  # not reset
        assert stale[0].status == "reset"
        assert (book.committed, book.reach, book.in_flight, book.generation) == (3, None, (), 1)
        fresh = ledger.record(
            space, owner.token, {0: Fence(fences[0].epoch, 1)}, [Slice(0, "b3", 3, 5)], MINUTE
        )
        assert fresh[0].status == "written"

    def test_a_repair_or_an_init_starts_the_books_afresh(
        self, ledger: Ledger, store: OffsetStore, make_leases: MakeLeases, space: Space
    ) -> None:
        owner, fences = self._owner(make_leases, store, space, {0: 500})
        ledger.record(space, owner.token, fences, [Slice(0, "b1", 500, 510)], MINUTE)

        store.commit(space, owner.token, [Checkpoint(0, 40, fences[0].epoch, 0)], mode="repair")
        book = ledger.snapshot(space, [0]).partitions[0]

        assert (book.committed, book.reach, book.in_flight, book.read_from) == (40, None, (), 40)

    # -- begin, re-drive, expedite ---------------------------------------------------------

    def test_begin_counts_starts_and_extends_the_due_time(
        self, ledger: Ledger, store: OffsetStore, make_leases: MakeLeases, space: Space
    ) -> None:
        owner, fences = self._owner(make_leases, store, space, {0: 0})
        ledger.record(space, owner.token, fences, [Slice(0, "b1", 0, 10)], 1_000)
        slices = [Slice(0, "b1", 0, 10), Slice(0, "gone", 10, 20)]

        first = ledger.begin(space, slices, 10 * MINUTE, max_starts=3)
        second = ledger.begin(space, slices[:1], 0, max_starts=3)
        snap = ledger.snapshot(space, [0])

        assert (first, second) == ([1, None], [2])
        assert snap.partitions[0].in_flight[0].due_ms - snap.now_ms > 9 * MINUTE

    def test_a_batch_started_too_often_is_made_due_at_once(
        self, ledger: Ledger, store: OffsetStore, make_leases: MakeLeases, space: Space
    ) -> None:
        owner, fences = self._owner(make_leases, store, space, {0: 0})
        ledger.record(space, owner.token, fences, [Slice(0, "b1", 0, 10)], 10 * MINUTE)

        starts = [ledger.begin(space, [Slice(0, "b1", 0, 10)], MINUTE, 2)[0] for _ in range(3)]
        snap = ledger.snapshot(space, [0])

        assert starts == [1, 2, 3]
        assert snap.partitions[0].in_flight[0].due_ms <= snap.now_ms

    def test_redrive_counts_a_hand_off_and_keeps_the_starts(
        self, ledger: Ledger, store: OffsetStore, make_leases: MakeLeases, space: Space
    ) -> None:
        owner, fences = self._owner(make_leases, store, space, {0: 0})
        ledger.record(space, owner.token, fences, [Slice(0, "b1", 0, 10)], 0)
        ledger.begin(space, [Slice(0, "b1", 0, 10)], 0, 5)
        [entry] = ledger.snapshot(space, [0]).partitions[0].in_flight

        out = ledger.redrive(
            space, owner.token, fences[0], entry, [Slice(0, "b1", 0, 10)], 2 * MINUTE
        )
        snap = ledger.snapshot(space, [0])
        [again] = snap.partitions[0].in_flight

        assert out == "redriven"
        assert (again.handoffs, again.starts) == (2, 1)
        assert again.due_ms - snap.now_ms > MINUTE

    def test_redrive_in_halves_keeps_the_committed_offset(
        self, ledger: Ledger, store: OffsetStore, make_leases: MakeLeases, space: Space
    ) -> None:
        owner, fences = self._owner(make_leases, store, space, {0: 0})
        ledger.record(space, owner.token, fences, [Slice(0, "b1", 0, 10)], 0)
        [entry] = ledger.snapshot(space, [0]).partitions[0].in_flight
        halves = [Slice(0, "b1.0", 0, 5), Slice(0, "b1.1", 5, 10)]

        ledger.redrive(space, owner.token, fences[0], entry, halves, MINUTE)
        book = ledger.snapshot(space, [0]).partitions[0]
        old = ledger.finish(space, [Slice(0, "b1", 0, 10)])
        second = ledger.finish(space, [halves[1]])
        first = ledger.finish(space, [halves[0]])

        assert [(e.batch, e.handoffs, e.starts) for e in book.in_flight] == [
            ("b1.0", 1, 0),
            ("b1.1", 1, 0),
        ]
        assert [old[0].status, old[0].committed, second[0].committed, first[0].committed] == [
            "unknown",
            0,
            0,
            10,
        ]

    def test_redrive_of_a_finished_batch_or_without_the_lease(
        self,
        ledger: Ledger,
        store: OffsetStore,
        make_leases: MakeLeases,
        space: Space,
    ) -> None:
        owner, fences = self._owner(make_leases, store, space, {0: 0})
        ledger.record(space, owner.token, fences, [Slice(0, "b1", 0, 10)], 0)
        ledger.record(space, owner.token, fences, [Slice(0, "b2", 10, 12)], 0)
        first, second = ledger.snapshot(space, [0]).partitions[0].in_flight
        ledger.finish(space, [Slice(0, "b1", 0, 10)])

        finished = ledger.redrive(space, owner.token, fences[0], first, [Slice(0, "b1", 0, 10)], 0)
        stranger = ledger.redrive(space, "nobody", fences[0], second, [Slice(0, "b2", 10, 12)], 0)

        assert (finished, stranger) == ("finished", "not_owner")
        with pytest.raises(ValueError):
            ledger.redrive(space, owner.token, fences[0], second, [Slice(0, "b2", 10, 11)], 0)

    def test_expedite_makes_a_batch_due_now(
        self, ledger: Ledger, store: OffsetStore, make_leases: MakeLeases, space: Space
    ) -> None:
        owner, fences = self._owner(make_leases, store, space, {0: 0})
        ledger.record(space, owner.token, fences, [Slice(0, "b1", 0, 10)], 10 * MINUTE)

        ledger.expedite(space, [Slice(0, "b1", 0, 10), Slice(0, "other", 10, 11)])
        snap = ledger.snapshot(space, [0])

        assert snap.partitions[0].in_flight[0].due_ms <= snap.now_ms

    def test_expedite_with_unstart_takes_back_one_start_and_never_goes_below_zero(
        self, ledger: Ledger, store: OffsetStore, make_leases: MakeLeases, space: Space
    ) -> None:
        owner, fences = self._owner(make_leases, store, space, {0: 0})
        ledger.record(space, owner.token, fences, [Slice(0, "b1", 0, 10)], 10 * MINUTE)
        ledger.begin(space, [Slice(0, "b1", 0, 10)], 10 * MINUTE, max_starts=3)
        ledger.begin(space, [Slice(0, "b1", 0, 10)], 10 * MINUTE, max_starts=3)

        ledger.expedite(space, [Slice(0, "b1", 0, 10)], unstart=True)
        once = ledger.snapshot(space, [0])
        for _ in range(3):
            ledger.expedite(space, [Slice(0, "b1", 0, 10)], unstart=True)
        floor = ledger.snapshot(space, [0]).partitions[0].in_flight[0]

        entry = once.partitions[0].in_flight[0]
        assert (entry.starts, entry.handoffs) == (1, 1)
        assert entry.due_ms <= once.now_ms
        assert floor.starts == 0
