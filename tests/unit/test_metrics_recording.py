"""What the pull, the stages and the alarm pipeline record, on the twins, into a private
registry (one process: no multiprocess files here); and that recording off costs nothing and
a failure to record never reaches the pipeline."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from prometheus_client import CollectorRegistry

from tests.unit.fakes import ManualClock
from tests.unit.pulling_world import TOPIC, World, pipeline
from workers.metrics import record
from workers.metrics.registry import WorkerMetrics, build
from workers.pulling.cycle import Summary
from workers.pulling.tickets import Ticket
from workers.stages.base import Stage
from workers.state.keys import Space
from workers.state.leases import Owner
from workers.state.ledger import Fence, Slice
from workers.state.offsets import Checkpoint
from workers.testing import MemoryLeases, MemoryLedger, MemoryOffsetStore, MemoryState


class Scrape:
    """The registry the recording writes to, read by sample name and labels."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def __call__(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def scrape() -> Iterator[Scrape]:
    registry = CollectorRegistry()
    record.enable(build(registry), ["alarms"])
    yield Scrape(registry)
    record.disable()


def test_a_pull_cycle_records_what_it_read_handed_off_and_dead_lettered(
    world: World, scrape: Scrape
) -> None:
    world.fill(0, 4)
    world.fill(1, 3)
    world.log.append(TOPIC, 2, b"{not json", key=b"k")
    world.log.append(TOPIC, 2, b"[1, 2]", key=b"k")
    world.log.append(TOPIC, 2, b"[3]", key=b"k")
    puller = world.puller(pipeline(batch_size=3))

    summary = puller.cycle()
    record.pull_cycle(summary)  # what workers.pulling.engine.run_cycle does after each cycle

    p = {"pipeline": "alarms"}
    assert scrape("workers_records_pulled_total", **p) == summary.records == 10
    assert scrape("workers_bytes_pulled_total", **p) == summary.bytes > 0
    assert scrape("workers_records_delivered_total", **p) == summary.delivered == 7
    assert scrape("workers_batches_total", **p) == summary.batches == 3
    assert scrape("workers_handoff_seconds_count", **p) == 3  # one per batch
    assert scrape("workers_pull_cycles_total", pipeline="alarms", stopped_by="caught_up") == 1
    assert scrape("workers_pull_cycle_seconds_count", **p) == 1
    letters = {"pipeline": "alarms", "stage": "pull"}
    assert scrape("workers_records_dead_lettered_total", **letters, reason="not_json") == 1
    assert scrape("workers_records_dead_lettered_total", **letters, reason="not_object") == 2
    assert scrape("workers_commit_refusals_total", pipeline="alarms", reason="reset") == 0


def test_leases_held_follow_acquire_and_release(world: World, scrape: Scrape) -> None:
    world.fill(0, 1)
    puller = world.puller(pipeline(max_partitions=2))

    puller.cycle()
    held = scrape("workers_leases_held", pipeline="alarms")
    puller.cycle()  # the same leases kept: not counted twice
    again = scrape("workers_leases_held", pipeline="alarms")
    puller.release()

    assert (held, again) == (2, 2)
    assert scrape("workers_leases_held", pipeline="alarms") == 0


def test_a_cycle_the_fence_stopped_is_a_commit_refusal(scrape: Scrape) -> None:
    record.pull_cycle(Summary("alarms", stopped_by="lease_lost", abandoned=2))
    record.pull_cycle(Summary("alarms", stopped_by="reset"))
    record.pull_cycle(Summary("alarms", stopped_by="max_seconds"))

    refusals = "workers_commit_refusals_total"
    assert scrape(refusals, pipeline="alarms", reason="lease_lost") == 1
    assert scrape(refusals, pipeline="alarms", reason="reset") == 1
    assert scrape("workers_pull_cycles_total", pipeline="alarms", stopped_by="reset") == 1
    crashed = {"pipeline": "alarms", "stage": "pull", "reason": "crashed"}
    assert scrape("workers_records_dead_lettered_total", **crashed) == 2


def test_a_pipeline_not_configured_here_is_unknown(scrape: Scrape) -> None:
    record.dead_lettered("made-up-pipeline", "s.x", ["value is a JSON array; expected ..."])
    record.handed_off("another", 0.01)

    unknown = {"pipeline": "unknown", "stage": "s.x", "reason": "not_object"}
    assert scrape("workers_records_dead_lettered_total", **unknown) == 1
    assert scrape("workers_handoff_seconds_count", pipeline="unknown") == 1


# -- the last stage finishing a batch ------------------------------------------------------

SPACE = Space("t", "common", "g", "events")
SLICE = Slice(0, "b1", 0, 4)
TICKET = Ticket("alarms", SPACE, (SLICE,), 60_000, 2)


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Iterator[Celery]:
    """A Celery app whose stages' ledger is a twin holding batch b1 in flight."""
    state = MemoryState(clock=ManualClock())
    leases = MemoryLeases(state, Owner("h", 1), 30.0)
    epoch = leases.acquire(SPACE, [0]).leases[0].epoch
    MemoryOffsetStore(state).commit(SPACE, leases.token, [Checkpoint(0, 0, epoch, 0)], "init")
    ledger = MemoryLedger(state)
    ledger.record(SPACE, leases.token, {0: Fence(epoch, 0)}, [SLICE], 60_000)
    app = Celery("metrics-test", set_as_current=False)
    app.conf.update(broker_url="memory://", task_default_queue="metrics-test")
    monkeypatch.setattr(Stage, "_ledger", lambda self: ledger)
    monkeypatch.setattr(Stage, "_brake", lambda self, ticket: None)
    yield app
    app.close()


def finish(app: Celery, ticket: Ticket, **headers: Any) -> None:
    @app.task(base=Stage, name="t.last", bind=True, shared=False)
    def last(self: Any, batch: list[Any]) -> list[Any]:
        return batch

    last.push_request(args=([],), called_directly=False, retries=0, id="r1",
                      **ticket.header(0, 1), **headers)  # fmt: skip
    try:
        last([])
    finally:
        last.pop_request()


def test_the_last_stage_records_the_commit_and_the_age_of_the_oldest_record(
    app: Celery, scrape: Scrape
) -> None:
    finish(app, TICKET, **{record.OLDEST_HEADER: int(time.time() * 1000) - 90_000})

    assert scrape("workers_commit_seconds_count", pipeline="alarms") == 1
    assert scrape("workers_record_age_seconds_count", pipeline="alarms") == 1
    age = scrape("workers_record_age_seconds_sum", pipeline="alarms")
    assert 90 <= age < 90 + 60  # generous: the machine may be slow, never early
    assert scrape("workers_record_age_seconds_bucket", pipeline="alarms", le="60.0") == 0


@pytest.mark.parametrize("oldest", [None, "12", -5, 1.5, True, [1]])
def test_a_missing_or_odd_timestamp_header_records_no_age(
    app: Celery, scrape: Scrape, oldest: Any
) -> None:
    finish(app, TICKET, **({} if oldest is None else {record.OLDEST_HEADER: oldest}))

    assert scrape("workers_commit_seconds_count", pipeline="alarms") == 1
    assert scrape("workers_record_age_seconds_count", pipeline="alarms") == 0


def test_a_timestamp_in_the_future_is_age_zero(scrape: Scrape) -> None:
    record.finished("alarms", 0.001, 2_000_000_000_000, now=1_900_000_000.0)

    assert scrape("workers_record_age_seconds_sum", pipeline="alarms") == 0
    assert scrape("workers_record_age_seconds_count", pipeline="alarms") == 1


def test_the_oldest_timestamp_of_a_batch_ignores_records_without_one() -> None:
    batch = [{"timestamp": 30}, {"timestamp": -1}, {"timestamp": 20}, {}, {"timestamp": "1"}]

    assert record.oldest_ms(batch) == 20
    assert record.oldest_ms([{"timestamp": -1}]) is None
    assert record.oldest_ms([]) is None


# -- the alarm pipeline ----------------------------------------------------------------------


def test_alarm_counts_become_outcomes_duplicates_and_publications(scrape: Scrape) -> None:
    record.alarm_counts({"opened": 3, "updated": 2, "stale": 4, "duplicate": 1, "replayed": 2})
    record.alarm_counts({"closed": 1, "quiet_closed": 2, "published": 5, "invalid": 7})
    record.publish_failed(4)

    assert {o: scrape("workers_alerts_total", outcome=o) for o in record.CHANGES} == {
        "opened": 3, "updated": 2, "recovered": 0, "closed": 3,
    }  # fmt: skip
    assert scrape("workers_alarm_duplicates_skipped_total") == 3
    assert scrape("workers_alarm_changes_published_total") == 5
    assert scrape("workers_alarm_publish_failures_total") == 4


# -- off, and failing --------------------------------------------------------------------------


def test_nothing_is_recorded_while_metrics_are_off(world: World) -> None:
    registry = CollectorRegistry()
    build(registry)  # made, but not enabled
    world.fill(0, 3)

    record.pull_cycle(world.puller().cycle())
    record.finished("alarms", 0.1, 1)
    record.alarm_counts({"opened": 1})

    assert not record.enabled()
    values = [s.value for f in registry.collect() for s in f.samples if "_created" not in s.name]
    assert values == [0.0] * 3  # only the label-less series exist, all zero


class Broken:
    def labels(self, *args: Any) -> Any:
        raise OSError(28, "No space left on device")

    inc = labels


def test_a_metric_that_cannot_be_written_is_logged_once_and_never_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    record.enable(WorkerMetrics(dict.fromkeys(build(CollectorRegistry()).by_name, Broken())), [])
    try:
        with caplog.at_level(logging.WARNING, logger="workers.metrics.record"):
            record.pull_cycle(Summary("alarms", records=3))
            record.handed_off("alarms", 0.1)
            record.alarm_counts({"published": 1})
    finally:
        record.disable()

    assert [r.getMessage() for r in caplog.records] == [
        "metrics: cannot record (OSError(28, 'No space left on device')); recording goes on "
        "where it can"
    ]
