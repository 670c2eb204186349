"""The multiprocess directory: one worker per directory, emptied at start; values written by a
forked process add up, and a process that is gone leaves the gauges' sums but not the
counters'. Files only: the endpoint's socket is tested in tests/integration."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import values

from tests.unit.config_support import minimal_conf
from workers.config import load_settings
from workers.metrics import process, record
from workers.metrics.directory import (
    ENV,
    MetricsUnavailable,
    activate,
    deactivate,
    mark_dead,
    prepare,
    release,
    sweep,
)
from workers.metrics.endpoint import registry_for
from workers.metrics.registry import build


def test_the_default_is_a_fresh_temporary_directory_removed_at_release() -> None:
    first, second = prepare(None), prepare(None)

    assert first.path != second.path
    assert os.path.isdir(first.path) and os.listdir(first.path) == []
    release(first)
    release(second)
    assert not os.path.exists(first.path) and not os.path.exists(second.path)


def test_a_configured_directory_is_made_emptied_of_metric_files_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "metrics"
    path.mkdir()
    (path / "counter_123.db").write_bytes(b"old")
    (path / "notes.txt").write_text("mine")

    directory = prepare(str(path))
    release(directory)

    assert sorted(p.name for p in path.iterdir()) == [".lock", "notes.txt"]
    assert prepare(str(tmp_path / "new" / "deeper")).path == str(tmp_path / "new" / "deeper")


def test_a_second_worker_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    first = prepare(str(tmp_path))

    with pytest.raises(MetricsUnavailable) as refused:
        prepare(str(tmp_path))
    release(first)
    again = prepare(str(tmp_path))  # free once the first let it go
    release(again)

    assert str(refused.value) == (
        f"metrics: workers_metrics_dir {str(tmp_path)!r} cannot be used: another worker uses it"
    )


def test_a_directory_that_cannot_be_made_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")

    with pytest.raises(MetricsUnavailable) as refused:
        prepare(str(tmp_path / "file" / "metrics"))

    assert str(refused.value) == (
        f"metrics: workers_metrics_dir {str(tmp_path / 'file' / 'metrics')!r} cannot be used: "
        "Not a directory"
    )


@pytest.fixture
def active(tmp_path: Path) -> Iterator[str]:
    """Multiprocess mode on ``tmp_path`` for this test only."""
    activation = activate(str(tmp_path))
    try:
        yield str(tmp_path)
    finally:
        deactivate(activation)


def samples(path: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry_for(path).collect()
        for s in family.samples
    }


def test_values_of_forked_processes_add_up_and_a_dead_ones_gauge_leaves(active: str) -> None:
    metrics = build()
    metrics["workers_records_pulled"].labels("alarms").inc(2)
    metrics["workers_leases_held"].labels("alarms").inc(3)
    pid = os.fork()
    if pid == 0:  # a pool process: writes files of its own, under its own pid
        metrics["workers_records_pulled"].labels("alarms").inc(5)
        metrics["workers_leases_held"].labels("alarms").inc(1)
        os._exit(0)
    os.waitpid(pid, 0)
    pulled = ("workers_records_pulled_total", (("pipeline", "alarms"),))
    held = ("workers_leases_held", (("pipeline", "alarms"),))

    assert os.path.exists(os.path.join(active, f"gauge_livesum_{pid}.db"))
    after = samples(active)  # the scrape sweeps the gone process first

    assert (after[pulled], after[held]) == (7, 3)
    assert not os.path.exists(os.path.join(active, f"gauge_livesum_{pid}.db"))
    assert sweep(active) == []  # nothing left to sweep; this process is alive


def test_a_process_that_says_it_ends_is_marked_dead(active: str) -> None:
    metrics = build()
    metrics["workers_leases_held"].labels("alarms").inc(4)

    mark_dead(active, os.getpid())

    assert ("workers_leases_held", (("pipeline", "alarms"),)) not in samples(active)


def test_activation_is_undone(tmp_path: Path) -> None:
    before = (os.environ.get(ENV), values.ValueClass)

    activation = activate(str(tmp_path))
    during = (os.environ.get(ENV), values.ValueClass._multiprocess)
    deactivate(activation)

    assert during == (str(tmp_path), True)
    assert (os.environ.get(ENV), values.ValueClass) == before


def test_a_worker_without_a_port_starts_nothing() -> None:
    assert process.start(load_settings(minimal_conf(), {})) is None
    assert not record.enabled()


def test_a_worker_whose_directory_is_unusable_runs_on_without_metrics(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "file").write_text("")
    conf = {**minimal_conf(), "workers_metrics_port": 9, "workers_metrics_dir": f"{tmp_path}/file"}

    with caplog.at_level(logging.ERROR, logger="workers.metrics.process"):
        serving = process.start(load_settings(conf, {}))

    assert serving is None and not record.enabled()
    assert ENV not in os.environ or os.environ[ENV] != f"{tmp_path}/file"
    assert [r.getMessage() for r in caplog.records] == [
        f"metrics: workers_metrics_dir '{tmp_path}/file' cannot be used: Not a directory; this "
        "worker runs on without metrics"
    ]
