"""Scenario *scale*: one Beat pull cycle of a pipeline over many quiet topics (``topic_pattern``,
one partition each) and of one topic of many partitions, as ``workers.pull`` runs it
(``pulling`` + ``run_cycle``, in this process): its wall time, the Redis commands and round
trips and the Kafka requests it makes, and how they grow with the number of idle partitions.

The topics hold one record per partition, read and finished before the clock starts, so every
partition is idle: at its log end with nothing in flight. The bench plays the pipeline's last
stage: after each cycle it finishes the batches the cycle handed off (``Ledger.finish``, as a
batch's last stage does), outside the clock.
"""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from bench.events import stream
from bench.kafka_io import delete_topics, producer
from bench.services import Services, app_for, names, pipeline
from bench.wire import Tally, counting
from workers.config import settings_for
from workers.connections import connections_for
from workers.pulling.cycle import Summary
from workers.pulling.engine import pulling, run_cycle
from workers.pulling.fanout import Fanout, FanoutSummary
from workers.state.keys import Space
from workers.state.ledger import Slice
from workers.state.ledger_redis import RedisLedger

NAME = "scale"  # the pipeline's name
NEW_RECORDS = 5  # per topic with work, each cycle of the busy variant
FLAT = 1.5  # "roughly flat": µs per idle partition at the largest size <= 1.5 x the next
UNDER = 0.25  # "well under the interval": the largest idle cycle <= a quarter of it


@dataclass(frozen=True)
class Sizes:
    topics: tuple[int, ...]  # topics of the pattern pipelines, one partition each
    wide: int  # partitions of the one-topic pipeline
    cycles: int  # measured cycles per variant (the figure is their median)
    looks: int  # measured cycles that look the topics up again
    empty: int  # new empty topics whose first cycles are timed
    # Seconds from one cycle's start to the next's: None for the pipeline's interval, as Beat
    # sends them; at least kafka-python's metadata backoff (100 ms, see ``_Case.measure``).
    gap: float | None = None


FULL = Sizes(topics=(10, 100, 1000), wide=100, cycles=7, looks=3, empty=10)
QUICK = Sizes(topics=(5, 20), wide=10, cycles=2, looks=1, empty=2, gap=0.25)


def busy_count(topics: int) -> int:
    """Topics with new records in the busy variant: 1%, at least one."""
    return max(1, topics // 100)


def run(svc: Services, sizes: Sizes, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Every case of the scenario: its rows, the seconds setting up took, the targets."""
    tag = uuid.uuid4().hex[:8]
    sets = {n: [f"bench-{tag}-scale{n}-{i:04d}" for i in range(n)] for n in sizes.topics}
    wide = f"bench-{tag}-wide{sizes.wide}"
    seeded = {t: 1 for topics in sets.values() for t in topics} | {wide: sizes.wide}
    empty = {f"bench-{tag}-empty-{i:04d}": 1 for i in range(sizes.empty)}
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        create(svc.kafka, seeded | empty)
        created = time.monotonic() - started
        seed(svc.kafka, seeded)
        setup = {"topics": len(seeded) + len(empty), "create_seconds": round(created, 2),
                 "create_and_seed_seconds": round(time.monotonic() - started, 2)}  # fmt: skip
        say(f"scale: {setup['topics']:,} topics created in {created:.1f} s")
        for n, topics in sets.items():
            rows += _many(svc, tag, n, topics, sizes, say)
            say(f"  {rows[-3]['case']}: warm-up {rows[-1]['warm_up']}, "
                f"idle cycle {rows[-3]['ms_median']:.1f} ms")  # fmt: skip
        rows += _one(svc, wide, sizes, say)
        say(f"  {rows[-1]['case']}: idle cycle {rows[-1]['ms_median']:.1f} ms")
        first = _empty(svc, tag, list(empty), sizes, say)
        say(f"  {len(empty)} new empty topics: idle after {first['seconds']} s")
    finally:
        delete_topics(svc.kafka, list(seeded | empty))
    return {"sizes": asdict(sizes), "setup": setup, "rows": rows, "empty_topics": first,
            "targets": targets(rows)}  # fmt: skip


# -- the cases ------------------------------------------------------------------------------


def _pattern(prefix: str) -> dict[str, Any]:
    """A pipeline over the topics named ``prefix`` + digits."""
    config = {k: v for k, v in pipeline("-").items() if k != "topic"}
    # A look at the topics in every measured cycle or in none: the looks are measured apart.
    config.update(topic_pattern=re.escape(prefix) + "[0-9]+", topics_refresh_seconds=86_400,
                  redrive_seconds=3600)  # fmt: skip
    return config


def _many(
    svc: Services, tag: str, n: int, topics: list[str], sizes: Sizes, say: Callable[[str], None]
) -> list[dict[str, Any]]:
    """A pattern pipeline over ``topics``: idle, idle with a fresh topic look, 1% busy."""
    config = _pattern(f"bench-{tag}-scale{n}-")
    busy = topics[:: max(1, n // busy_count(n))][: busy_count(n)]
    with _Case(svc, config, dict.fromkeys(topics, 1), say, sizes.gap) as case:
        warm = case.warm_up()
        idle = case.measure(sizes.cycles, expect=_idle(n))
        look = case.measure(sizes.looks, expect=_idle(n), look=True)
        add = case.adding(busy)
        read = case.measure(sizes.cycles, before=add, after=case.finisher(busy),
                            expect=_read(n, busy))  # fmt: skip
    what = f"{n:,} topic{'s' if n > 1 else ''}"
    return [
        _row("pattern", "idle", f"{what}, idle", n, n, idle, warm, case.interval),
        _row("pattern", "look", f"{what}, idle + topic look", n, n, look, warm, case.interval),
        _row("pattern", "busy", f"{what}, {len(busy)} with {NEW_RECORDS} new records", n, n,
             read, warm, case.interval),
    ]  # fmt: skip


def _one(
    svc: Services, topic: str, sizes: Sizes, say: Callable[[str], None]
) -> list[dict[str, Any]]:
    """The single-topic pipeline over ``topic``'s partitions, idle."""
    config = pipeline(topic, redrive_seconds=3600)
    with _Case(svc, config, {topic: sizes.wide}, say, sizes.gap) as case:
        warm = case.warm_up()
        idle = case.measure(sizes.cycles, expect=_idle(None))
    what = f"1 topic x {sizes.wide:,} partitions, idle"
    return [_row("topic", "idle", what, 1, sizes.wide, idle, warm, case.interval)]


def _empty(
    svc: Services, tag: str, topics: list[str], sizes: Sizes, say: Callable[[str], None]
) -> dict[str, Any]:
    """The cycles a pattern pipeline needs before its new empty topics are idle."""
    config = _pattern(f"bench-{tag}-empty-")
    with _Case(svc, config, dict.fromkeys(topics, 1), say, sizes.gap) as case:
        warm = case.warm_up()
    per_topic = warm["cycle_seconds"] / len(topics) if topics else 0.0
    return {"topics": len(topics), **warm, "seconds_per_topic": round(per_topic, 3)}


Result = Summary | FanoutSummary


def _idle(topics: int | None) -> Callable[[Result], str]:
    def check(summary: Result) -> str:
        if summary.stopped_by != "idle":
            return f"stopped by {summary.stopped_by!r}, not idle"
        if isinstance(summary, FanoutSummary) and summary.topics != topics:
            return f"{summary.topics} topics, not {topics}"
        return ""

    return check


def _read(topics: int, busy: Sequence[str]) -> Callable[[Result], str]:
    def check(summary: Result) -> str:
        assert isinstance(summary, FanoutSummary)
        read = {t: s.records for t, s in summary.cycles.items()}
        want = dict.fromkeys(busy, NEW_RECORDS)
        if summary.topics != topics or read != want:
            return f"{summary.topics} topics, read {read}, not {want} of {topics}"
        return ""

    return check


@dataclass
class Sample:
    seconds: float  # wall time
    cpu: float  # CPU time of this process (its threads: kafka-python's I/O thread too)
    tally: Tally
    reads: list[float]  # seconds of each topic's cycle (the topics with work)


@dataclass
class Measured:
    """The cycles measured, and the errors of those that failed (left out of the figures)."""

    samples: list[Sample]
    failed: list[str]


class _Case:
    """One pipeline on fresh Redis keys (its own prefix and consumer group) over ``topics``
    (name: partitions)."""

    def __init__(
        self, svc: Services, config: dict[str, Any], topics: dict[str, int],
        say: Callable[[str], None], gap: float | None,
    ) -> None:  # fmt: skip
        self.svc = svc
        self.topics = topics
        self.say = say
        self.prefix, self.queue = names()
        self.app = app_for(svc.env(self.prefix, self.queue, {NAME: config}))
        self.pipeline = settings_for(self.app).pipeline(NAME)
        self.interval = self.pipeline.interval
        self.server = svc.redis()  # reads INFO: never counted
        self.ledger = RedisLedger(self.server)
        self.last = 0.0  # when the last cycle started (time.monotonic)
        self.gap = gap

    def __enter__(self) -> _Case:
        return self

    def __exit__(self, *exc: object) -> None:
        connections_for(self.app).close()
        self.server.close()
        self.svc.cleanup(self.prefix, [self.queue])

    def pace(self) -> None:
        """Wait until one interval (or ``gap``) after the last cycle began, as Beat sends its
        pulls."""
        gap = self.interval if self.gap is None else self.gap
        time.sleep(max(0.0, self.last + gap - time.monotonic()))

    def cycle(self, look: bool = False) -> Result:
        """One Beat pull, as ``workers.pull`` runs it."""
        self.last = time.monotonic()
        with pulling(self.app, NAME, task="bench-scale") as p:
            if look and isinstance(p, Fanout):
                p.source.stale()
            return run_cycle(self.app, p)

    def _failed(self, exc: Exception, failed: list[str]) -> None:
        """A pull that raised: ``workers.pull`` fails (or backs off) and Beat's next pull
        tries again. Noted, and the next cycle runs."""
        failed.append(f"{type(exc).__name__}: {exc}"[:300])
        self.say(f"  a cycle of {self.pipeline.source} failed: {failed[-1]}")
        if len(failed) > 5:
            raise RuntimeError(f"scale: {len(failed)} cycles failed") from exc

    def warm_up(self, limit: float = 900.0) -> dict[str, Any]:
        """Cycles until one finds every partition idle (offsets stored, batches finished).
        ``seconds``: from the first to the end of the last, Beat's pacing included;
        ``cycle_seconds``: the cycles' own time."""
        started = time.monotonic()
        cycles, busy = 0, 0.0
        failed: list[str] = []
        while True:
            cycles += 1
            self.pace()
            try:
                summary = self.cycle()
            except Exception as exc:  # noqa: BLE001 - as Beat: the next pull tries again
                self._failed(exc, failed)
                continue
            finally:
                busy += time.monotonic() - self.last
            self.finish(list(summary.cycles) if isinstance(summary, FanoutSummary)
                        else list(self.topics))  # fmt: skip
            if summary.stopped_by == "idle":
                return {"cycles": cycles, "seconds": round(time.monotonic() - started, 2),
                        "cycle_seconds": round(busy, 2), "failed": failed}  # fmt: skip
            if time.monotonic() - started > limit:
                raise RuntimeError(f"scale: not idle after {cycles} cycles ({limit:.0f} s)")

    def measure(
        self,
        cycles: int,
        *,
        expect: Callable[[Result], str],
        look: bool = False,
        before: Callable[[], None] = lambda: None,
        after: Callable[[], None] = lambda: None,
    ) -> Measured:
        """``cycles`` cycles, each starting one interval (or ``gap``) after the one before, as
        Beat sends them (back to back, kafka-python would hold each metadata request until
        100 ms after the last: its ``retry_backoff_ms``). A cycle that fails is noted and not
        measured; unmeasured cycles then make every partition idle again."""
        found = Measured([], [])
        while len(found.samples) < cycles:
            before()
            self.pace()
            try:
                with counting(self.server) as tally:
                    started, cpu = time.perf_counter(), time.process_time()
                    summary = self.cycle(look)
                    seconds = time.perf_counter() - started
                    cpu = time.process_time() - cpu
            except Exception as exc:  # noqa: BLE001 - as Beat: the next pull tries again
                self._failed(exc, found.failed)
                after()
                self.warm_up()  # idle again (what the failed cycle left, read and finished)
                continue
            wrong = expect(summary)
            if wrong:
                raise RuntimeError(f"scale: a measured cycle of {self.pipeline.source}: {wrong}")
            after()
            reads = [c.seconds for c in getattr(summary, "cycles", {}).values()]
            found.samples.append(Sample(seconds, cpu, tally, reads))
        return found

    def space(self, topic: str) -> Space:
        p = self.pipeline
        return Space(self.prefix, p.cluster, p.group, topic)

    def finish(self, topics: list[str]) -> None:
        """What the last stage does for each batch in flight on ``topics``."""
        for topic in topics:
            space = self.space(topic)
            books = self.ledger.snapshot(space, range(self.topics[topic])).partitions
            batches: dict[str, list[Slice]] = {}
            for p, book in books.items():
                for f in book.in_flight:
                    batches.setdefault(f.batch, []).append(Slice(p, f.batch, f.start, f.end))
            for slices in batches.values():  # one slice per partition per batch
                self.ledger.finish(space, slices)

    def finisher(self, topics: list[str]) -> Callable[[], None]:
        return lambda: self.finish(topics)

    def adding(self, topics: list[str]) -> Callable[[], None]:
        """Before a busy cycle: ``NEW_RECORDS`` records on each of ``topics``, one record batch
        each (Tansu's log end is where its last batch starts + 1)."""
        values = [v for _, v in stream(NEW_RECORDS, int(time.time() * 1000))]

        def add() -> None:
            prod = producer(self.svc.kafka, linger_ms=0)
            try:
                for topic in topics:
                    for value in values:
                        prod.send(topic, value=value, partition=0).get(timeout=30)
            finally:
                prod.close(timeout=30)

        return add


# -- topics ---------------------------------------------------------------------------------


def create(bootstrap: str, partitions: dict[str, int], timeout: float = 300.0) -> None:
    """Create the topics, 100 per request, and wait until the cluster lists every one with
    its partitions (``TimeoutError`` after ``timeout``)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=60_000)
    try:
        items = sorted(partitions.items())
        for i in range(0, len(items), 100):
            chunk = [NewTopic(name, n, 1) for name, n in items[i : i + 100]]
            with contextlib.suppress(TopicAlreadyExistsError):  # fresh names: never, but fine
                admin.create_topics(chunk)
        deadline = time.monotonic() + timeout
        while True:
            found = {d.get("name", d.get("topic")): len(d.get("partitions") or ())
                     for d in admin.describe_topics(list(partitions))}  # fmt: skip
            if all(found.get(name) == n for name, n in partitions.items()):
                return
            if time.monotonic() > deadline:
                missing = sum(found.get(name) != n for name, n in partitions.items())
                raise TimeoutError(f"scale: {missing} topics not ready after {timeout:.0f} s")
            time.sleep(0.2)
    finally:
        admin.close()


def seed(bootstrap: str, partitions: dict[str, int]) -> None:
    """One record on every partition (one batch each: a single record)."""
    values = [v for _, v in stream(16, int(time.time() * 1000))]
    prod = producer(bootstrap)
    try:
        futures = [
            prod.send(topic, value=values[p % len(values)], partition=p)
            for topic, n in partitions.items()
            for p in range(n)
        ]
        prod.flush(timeout=300)
        failed = [f.exception for f in futures if f.failed()]
        if failed or not all(f.succeeded() for f in futures):
            raise RuntimeError(f"scale: {len(futures) - len(failed)} of {len(futures)} "
                               f"records sent: {failed[:1]!r}")  # fmt: skip
    finally:
        prod.close(timeout=30)


# -- results --------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _row(
    pipeline: str,
    variant: str,
    case: str,
    topics: int,
    partitions: int,
    measured: Measured,
    warm: dict[str, Any],
    interval: float,
) -> dict[str, Any]:
    samples = measured.samples
    ms = [s.seconds * 1000 for s in samples]
    reads = [r for s in samples for r in s.reads]
    middle = sorted(samples, key=lambda s: s.seconds)[len(samples) // 2]
    requests: Counter[str] = Counter()
    for s in samples:
        requests.update(s.tally.requests)
    return {
        "pipeline": pipeline,  # "pattern" (topic_pattern) or "topic" (one topic)
        "variant": variant,  # "idle", "look" (idle, topics looked up again) or "busy"
        "case": case,
        "topics": topics,
        "partitions": partitions,
        "cycles": len(samples),
        "ms": [round(x, 3) for x in ms],
        "ms_median": round(_median(ms), 3),
        "ms_min": round(min(ms), 3),
        "ms_max": round(max(ms), 3),
        "us_per_partition": round(_median(ms) * 1000 / partitions, 2),
        "cpu_ms": round(_median([s.cpu * 1000 for s in samples]), 3),
        "redis_cpu_ms": round(_median([s.tally.redis_cpu * 1000 for s in samples]), 3),
        "ms_per_topic_read": round(_median(reads) * 1000, 1) if reads else None,
        "share_of_interval": round(_median(ms) / 1000 / interval, 4),
        "redis_commands": _median([s.tally.redis_commands for s in samples]),
        "redis_scripts": _median([s.tally.scripts for s in samples]),
        "redis_round_trips": _median([s.tally.round_trips for s in samples]),
        "kafka_requests": _median([s.tally.kafka_requests for s in samples]),
        "redis_commands_of_median_cycle": middle.tally.commands,
        "kafka_requests_by_api": {
            k: round(n / len(samples), 2) for k, n in sorted(requests.items())
        },
        "failed_cycles": measured.failed,  # left out of the figures
        "warm_up": warm,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's two targets on the pattern pipelines' idle cycles: µs per idle partition at
    the largest size against the next, and the largest cycle against the pipeline's interval."""
    idle = sorted((r for r in rows if (r["pipeline"], r["variant"]) == ("pattern", "idle")),
                  key=lambda r: r["partitions"])  # fmt: skip
    if len(idle) < 2:
        return []
    mid, big = idle[-2], idle[-1]
    flat = big["us_per_partition"] / mid["us_per_partition"]
    share = big["share_of_interval"]
    return [
        {"target": f"idle cycle: us per partition at {big['partitions']:,} topics <= {FLAT} x "
                   f"at {mid['partitions']:,}", "value": round(flat, 3),
         "shown": f"{flat:.2f} x", "met": flat <= FLAT},
        {"target": f"idle cycle over {big['partitions']:,} topics <= {UNDER} x the interval",
         "value": share, "shown": f"{big['ms_median']:.1f} ms = {share:.3f} x",
         "met": share <= UNDER},
    ]  # fmt: skip


def _us(value: float) -> str:
    return f"{value / 1000:.1f}ms" if value >= 1000 else f"{value:.0f}us"


def table(found: dict[str, Any]) -> str:
    """The rows as a fixed-width text table (also in bench/README.md)."""
    lines = [
        "one Beat pull cycle (topic_pattern: topics of 1 partition; median of the cycles)",
        f"{'':<38}{'wall':>8}{'':>14}{'per':>7}{'CPU':>7}{'Redis':>7}{'Redis':>7}"
        f"{'Lua':>6}{'round':>6}{'Kafka':>6}",
        f"{'pipeline':<38}{'ms':>8}{'min-max':>14}{'part.':>7}{'ms':>7}{'CPU ms':>7}"
        f"{'cmds':>7}{'calls':>6}{'trips':>6}{'req.':>6}",
    ]  # fmt: skip
    for r in found["rows"]:
        spread = f"{r['ms_min']:.1f}-{r['ms_max']:.1f}"
        lines.append(
            f"{r['case']:<38}{r['ms_median']:>8.1f}{spread:>14}"
            f"{_us(r['us_per_partition']):>7}{r['cpu_ms']:>7.1f}{r['redis_cpu_ms']:>7.1f}"
            f"{r['redis_commands']:>7g}{r['redis_scripts']:>6g}{r['redis_round_trips']:>6g}"
            f"{r['kafka_requests']:>6g}"
        )
    lines.append("  per part.: wall time / partitions; CPU: this process (all its threads); Lua "
                 "calls: EVALSHA; round trips: redis-py writes")  # fmt: skip
    e = found["empty_topics"]
    if e["topics"]:
        lines.append(f"  {e['topics']} new empty topics: idle after {e['cycles']} cycles, "
                     f"{e['cycle_seconds']:.1f} s of cycles ({e['seconds_per_topic']:.2f} s a "
                     "topic)")  # fmt: skip
    return "\n".join(lines)
