"""The lag exporter's collector on fake readers (what it exports, what it reuses, what an outage
or a silent service shows), and the argument checks of ``workers exporter`` (the integration
tests run it against real services)."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from celery import Celery
from click.testing import CliRunner
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.config_support import minimal_conf
from tests.unit.fakes import ManualClock
from workers.cli import main
from workers.config import PipelineConfig, load_settings
from workers.metrics.catalog import METRICS
from workers.metrics.lag import LagCollector, TimestampCache
from workers.ops.status import PartitionStatus, PipelineStatus, Timestamps

NOW_MS = 1_700_000_000_000
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def config(name: str = "alarms") -> PipelineConfig:
    conf = minimal_conf()
    conf["workers_pipelines"] = {name: conf["workers_pipelines"]["alarms"]}
    return load_settings(conf, environ={}).pipeline(name)


def row(partition: int, stored: int | None, end: int, oldest_ms: int | None = None,
        start: int = 0) -> PartitionStatus:  # fmt: skip
    lag = None if stored is None else max(0, end - max(stored, start))
    return PartitionStatus(partition, stored, start, end, lag, oldest_ms, None, 0)


class Readers:
    """Fake status and backlog readers: what they return or raise, and how often they ran."""

    def __init__(self, rows: list[PartitionStatus]) -> None:
        self.rows = rows
        self.fail: Exception | None = None
        self.backlog_fail: Exception | None = None
        self.gate: threading.Event | None = None  # set: a reading blocks until it is set
        self.calls: list[str] = []
        self.times: dict[str, list[Timestamps]] = {}  # by pipeline: the readers it was given

    def status(self, name: str, times: Timestamps) -> PipelineStatus:
        self.calls.append(name)
        self.times.setdefault(name, []).append(times)
        if self.gate is not None:
            self.gate.wait(30)
        if self.fail is not None:
            raise self.fail
        return PipelineStatus(config(name), list(self.rows), {}, NOW_MS)

    def backlog(self, name: str) -> tuple[str, int]:
        if self.backlog_fail is not None:
            raise self.backlog_fail
        return "celery", 7


@pytest.fixture
def readers() -> Readers:
    return Readers([row(0, 1, 4, NOW_MS - 2500), row(1, 2, 2), row(2, None, 5)])


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make(readers: Readers, clock: ManualClock) -> Iterator[Callable[..., LagCollector]]:
    def build(*names: str, **options: Any) -> LagCollector:
        options = {"min_interval": 5.0, "scrape_timeout": 5.0, "clock": clock, **options}
        return LagCollector(names or ("alarms",), readers.status, readers.backlog, **options)

    yield build
    if readers.gate is not None:
        readers.gate.set()  # let a blocked reading end


def scrape(collector: LagCollector) -> Samples:
    """One scrape through the text format, as Prometheus reads it."""
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}  # fmt: skip


def of(samples: Samples, name: str, **labels: str) -> dict[str, float]:
    """Samples of ``name`` matching ``labels``, by partition (or by queue)."""
    out = {}
    for (sample, sample_labels), value in samples.items():
        found = dict(sample_labels)
        if sample == name and all(found.get(k) == v for k, v in labels.items()):
            out[found.get("partition", found.get("queue", ""))] = value
    return out


# -- what a scrape exports ---------------------------------------------------------------------


def test_the_exported_families_are_the_catalogues_exporter_entries() -> None:
    collector = LagCollector([], Readers([]).status, Readers([]).backlog)

    described = {f.name: (f.type, f.documentation) for f in collector.describe()}

    assert described == {m.name: (m.kind, m.help) for m in METRICS if m.source == "exporter"}


def test_a_scrape_exports_offsets_lags_ages_and_the_backlog_per_partition(
    make: Callable[..., LagCollector],
) -> None:
    samples = scrape(make())

    assert of(samples, "workers_pipeline_up") == {"": 1.0}
    assert of(samples, "workers_log_end_offset", topic="alarm-events") == {
        "0": 4.0, "1": 2.0, "2": 5.0}  # fmt: skip
    # Partition 2 has no committed offset yet: no committed offset, no lag.
    assert of(samples, "workers_committed_offset") == {"0": 1.0, "1": 2.0}
    assert of(samples, "workers_lag_records") == {"0": 3.0, "1": 0.0}
    assert of(samples, "workers_lag_seconds") == {"0": 2.5, "1": 0.0}
    assert of(samples, "workers_queue_backlog", pipeline="alarms") == {"celery": 7.0}


def test_a_lagging_partition_whose_timestamp_is_unknown_has_no_lag_seconds(
    make: Callable[..., LagCollector], readers: Readers
) -> None:
    readers.rows = [row(0, 1, 4, oldest_ms=None)]

    samples = scrape(make())

    assert of(samples, "workers_lag_records") == {"0": 3.0}
    assert of(samples, "workers_lag_seconds") == {}


# -- reuse -------------------------------------------------------------------------------------


def test_scrapes_within_min_interval_reuse_the_last_reading(
    make: Callable[..., LagCollector], readers: Readers, clock: ManualClock
) -> None:
    collector = make()

    first = scrape(collector)
    clock.advance(4)
    second = scrape(collector)
    clock.advance(1)
    scrape(collector)

    assert second == first
    assert readers.calls == ["alarms", "alarms"]


def test_the_timestamp_cache_reads_only_offsets_it_has_not_seen() -> None:
    asked: list[dict[int, int]] = []

    def read(consumer: Any, topic: str, offsets: dict[int, int]) -> dict[int, int]:
        asked.append(dict(offsets))
        return {p: 1000 + o for p, o in offsets.items()}

    cache = TimestampCache(read)

    first = cache(None, "t", {0: 5, 1: 7})
    second = cache(None, "t", {0: 5, 1: 8})
    third = cache(None, "t", {0: 5})

    assert asked == [{0: 5, 1: 7}, {1: 8}]
    assert (first, second, third) == ({0: 1005, 1: 1007}, {0: 1005, 1: 1008}, {0: 1005})


def test_each_pipeline_keeps_one_timestamp_cache_across_readings(
    make: Callable[..., LagCollector], readers: Readers, clock: ManualClock
) -> None:
    collector = make("alarms", "audit")

    scrape(collector)
    clock.advance(10)
    scrape(collector)

    alarms, audit = readers.times["alarms"], readers.times["audit"]
    assert len(alarms) == len(audit) == 2
    assert alarms[0] is alarms[1] and audit[0] is audit[1]
    assert isinstance(alarms[0], TimestampCache) and alarms[0] is not audit[0]


# -- outages -----------------------------------------------------------------------------------


def test_a_pipeline_that_cannot_be_read_is_down_with_no_other_series_and_logged_once(
    make: Callable[..., LagCollector], readers: Readers, clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    collector = make(min_interval=0)
    caplog.set_level(logging.INFO, logger="workers.metrics")
    scrape(collector)
    readers.fail = redis.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

    down = [scrape(collector), scrape(collector)]
    readers.fail = None
    up = scrape(collector)

    for samples in down:
        assert {name for name, _ in samples} == {"workers_pipeline_up"}
        assert of(samples, "workers_pipeline_up") == {"": 0.0}
    assert of(up, "workers_pipeline_up") == {"": 1.0}
    assert of(up, "workers_lag_records") == {"0": 3.0, "1": 0.0}
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        ("INFO", "pipeline alarms: lag read: 3 partitions of common/alarm-events"),
        ("WARNING", "pipeline alarms: cannot read its lag (workers_pipeline_up 0): "
                    "ConnectionError: Error 111 connecting to 127.0.0.1:1. Connection refused."),
        ("INFO", "pipeline alarms: lag read again: 3 partitions of common/alarm-events"),
    ]  # fmt: skip
    assert all(r.exc_info is None for r in caplog.records)


def test_one_pipeline_down_leaves_the_others_up(
    make: Callable[..., LagCollector], readers: Readers
) -> None:
    def status(name: str, times: Timestamps) -> PipelineStatus:
        if name == "audit":
            raise TimeoutError("no answer")
        return readers.status(name, times)

    collector = LagCollector(["alarms", "audit"], status, readers.backlog)

    samples = scrape(collector)

    assert of(samples, "workers_pipeline_up", pipeline="alarms") == {"": 1.0}
    assert of(samples, "workers_pipeline_up", pipeline="audit") == {"": 0.0}
    assert of(samples, "workers_lag_records", pipeline="audit") == {}
    assert of(samples, "workers_lag_records", pipeline="alarms") == {"0": 3.0, "1": 0.0}


def test_a_reading_with_no_answer_in_time_is_down_and_not_started_twice(
    make: Callable[..., LagCollector], readers: Readers, caplog: pytest.LogCaptureFixture
) -> None:
    readers.gate = threading.Event()
    collector = make(min_interval=0, scrape_timeout=0.05)
    caplog.set_level(logging.INFO, logger="workers.metrics")

    silent = [scrape(collector), scrape(collector)]
    calls_while_silent = len(readers.calls)
    readers.gate.set()
    collector.scrape_timeout = 30  # a bound, not an expectation: the reading ends at once now
    answered = scrape(collector)

    assert [of(s, "workers_pipeline_up") for s in silent] == [{"": 0.0}, {"": 0.0}]
    assert {name for s in silent for name, _ in s} == {"workers_pipeline_up"}
    assert calls_while_silent == 1  # the hung reading was waited for, not started again
    assert of(answered, "workers_pipeline_up") == {"": 1.0}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "pipeline alarms: cannot read its lag (workers_pipeline_up 0): no answer within 0.05 s"
    ]


def test_a_backlog_that_cannot_be_read_is_left_out_and_the_pipeline_stays_up(
    make: Callable[..., LagCollector], readers: Readers, caplog: pytest.LogCaptureFixture
) -> None:
    readers.backlog_fail = OSError("broker gone")
    collector = make(min_interval=0)
    caplog.set_level(logging.INFO, logger="workers.metrics")

    samples = scrape(collector)
    scrape(collector)

    assert of(samples, "workers_pipeline_up") == {"": 1.0}
    assert of(samples, "workers_queue_backlog") == {}
    assert of(samples, "workers_lag_records") == {"0": 3.0, "1": 0.0}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "pipeline alarms: cannot read its first stage's queue backlog: OSError: broker gone"
    ]


# -- workers exporter: arguments ---------------------------------------------------------------

APP: Celery | None = None  # the app of the current call; --app points here


def run(monkeypatch: pytest.MonkeyPatch, *args: str, pipelines: bool = True) -> Any:
    conf = minimal_conf()
    if not pipelines:
        conf["workers_pipelines"] = {}
    app = Celery("exporter-test", set_as_current=False)
    app.conf.update(conf)
    monkeypatch.setattr(sys.modules[__name__], "APP", app)
    argv = ["--app", f"{__name__}:APP", "exporter", *args]
    return CliRunner().invoke(main, argv, prog_name="workers")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "65536"], "Invalid value for '--port': '65536' is not an integer between 0 "
                              "and 65535"),
        (["--port", "-1"], "'-1' is not an integer between 0 and 65535"),
        (["--port", "http"], "'http' is not an integer between 0 and 65535"),
        (["--min-interval", "nan"], "'nan' is not a number between 0 and 3600"),
        (["--scrape-timeout", "0"], "'0' is not a number between 0.1 and 300"),
        (["--host", "a b"], "'a b' is not a host name or IP address"),
        (["--host", ""], "'' is not a host name or IP address"),
        (["--host", "http://x"], "'http://x' is not a host name or IP address"),
    ],
)  # fmt: skip
def test_bad_arguments_are_one_line_with_exit_code_2(
    monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    result = run(monkeypatch, *args)

    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert message in result.stderr
    assert result.stderr.rstrip().endswith("see 'workers exporter --help'")


def test_an_unknown_pipeline_is_one_line_naming_it_and_the_known_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = run(monkeypatch, "--pipeline", "alarms", "--pipeline", "nope")

    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == "Error: unknown pipeline 'nope'; known: ['alarms']\n"


def test_no_pipeline_to_export_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(monkeypatch, pipelines=False)

    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        "Error: no pipelines configured (workers_pipelines): nothing to export\n"
    )
