"""One chaos run end to end: services, workers, producer and faults; then the drain and the
report. Everything it starts is stopped when it returns or raises (Ctrl-C included)."""

from __future__ import annotations

import dataclasses
import logging
import random
import re
import shutil
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

from tests.chaos.brokers import start_broker, wait_until_up
from tests.chaos.drain import Drained, wait_drained
from tests.chaos.expect import expect
from tests.chaos.explain import attribute, explain, explain_vanished
from tests.chaos.faults import Injector, schedule
from tests.chaos.fleet import Fleet
from tests.chaos.producer import Producer
from tests.chaos.report import Facts, Report, compute, duplicate_bound
from tests.chaos.settings import ChaosConfig
from tests.chaos.trace import BrokerTrace, vanished
from tests.chaos.truth import Record, alerts, applied, observed, read_topic, settled_client
from tests.chaos.workload import Workload
from tests.integration.e2e.harness import Cluster, make_env
from workers.state.keys import Space
from workers.testing import RedisServer, create_topics

logger = logging.getLogger(__name__)

STAGES = ("chaos.observe", "workers.alarms.parse", "workers.alarms.build", "workers.alarms.publish")
# The messages of the stages: one per stage (chained), or one running all of them (fused).
MESSAGES = (*STAGES, "workers.stages.fused")
_FAILED = re.compile(r"Task (\S+)\[[^\]]+\] raised unexpected: (.*)")


def run(config: ChaosConfig) -> Report:
    """Run once and return the report (also written to ``config.report`` if set)."""
    workdir = Path(tempfile.mkdtemp(prefix="workers-chaos-"))
    kafka_logs = logging.getLogger("kafka")
    with ExitStack() as stack:
        stack.callback(_keep_or_remove, workdir, config.keep_logs)
        stack.callback(kafka_logs.setLevel, kafka_logs.level)
        kafka_logs.setLevel(logging.CRITICAL)  # clients reconnecting through broker restarts
        report = _run(config, workdir, stack)
    if config.report is not None:
        config.report.write_text(report.as_json())
    return report


def _run(config: ChaosConfig, workdir: Path, stack: ExitStack) -> Report:
    redis_server = RedisServer(data_dir=workdir / "redis").start()
    stack.callback(redis_server.stop)
    log = workdir / "redis" / "redis.log"  # kept with --keep-logs
    stack.callback(lambda: log.write_text(redis_server.output()))
    broker = start_broker(config.storage, stack)
    wait_until_up(broker.bootstrap)
    run_id = uuid.uuid4().hex[:8]
    topic, output, prefix = f"chaos-{run_id}", f"chaos-{run_id}-alerts", f"chaos-{run_id}"
    topics = {topic: config.partitions, f"{topic}.dlq": 1, output: config.output_partitions}
    create_topics(broker.bootstrap, topics, timeout=60)
    env, queue = make_env(
        kafka=broker.bootstrap, redis_url=redis_server.url, prefix=prefix,
        pipelines={"alarms": config.pipeline(topic)}, WORKERS_ALARM_OUTPUT_TOPIC=output,
        WORKERS_ALARM_QUIET_SECONDS="2592000", E2E_VISIBILITY=str(config.visibility_timeout),
        CHAOS_UNACKED_MUTEX_EXPIRE=str(config.unacked_mutex_expire),
        **config.extra_env,
    )  # fmt: skip
    env["WORKERS_CELERY_CONFIG"] = "tests.chaos.celeryconfig_chaos"
    for name in [n for n in env if n.startswith("WORKERS_CHAOS_")]:
        del env[name]  # the package refuses WORKERS_* variables it does not know
    (workdir / "logs").mkdir()
    trace = BrokerTrace(env["E2E_BROKER_URL"], 1, MESSAGES)
    trace.start()
    stack.callback(trace.stop)
    t0, t0_wall = time.monotonic(), time.time()
    consume = config.mode == "long_lived"
    fleet = Fleet(Cluster(env, workdir / "logs", queue), config.workers, config.concurrency,
                  consume, t0).start()  # fmt: skip
    stack.callback(fleet.stop)
    producer = Producer(broker.bootstrap, topic, Workload(config.seed), config.records,
                        config.rate, tick=config.tick)  # fmt: skip
    producer.start()
    stack.callback(producer.stop)
    rng = random.Random(config.seed + 1)
    injector = Injector(schedule(config, rng), fleet=fleet, redis=redis_server, broker=broker,
                        config=config, rng=rng, t0=t0)  # fmt: skip
    injector.start()
    stack.callback(injector.stop)
    while not producer.finished.is_set() or injector.is_alive():
        fleet.watch()
        time.sleep(0.5)
    if producer.error is not None:
        raise RuntimeError("the producer failed") from producer.error
    if injector.error is not None:
        raise RuntimeError("a fault could not be injected") from injector.error
    logger.info("t=%.1fs producing and faults done; draining", time.monotonic() - t0)

    client = settled_client(redis_server.url)
    broker_client = settled_client(env["E2E_BROKER_URL"])
    space = Space(prefix, "test", "workers", topic)
    log_end = {p: producer.last.get(p, -1) + 1 for p in range(config.partitions)}
    drained = wait_drained(
        client, broker_client, space=space, log_end=log_end, queues=[queue, f"{queue}.consume"],
        tasks=MESSAGES, timeout=config.drain_timeout, settle=config.settle_seconds,
        visibility=config.visibility_timeout, tick=fleet.watch,
    )  # fmt: skip
    fleet.stop()  # nothing may change while the truth is read
    inputs = read_topic(broker.bootstrap, topic, ends=log_end)
    expectation = expect(topic, inputs)
    facts = Facts(
        topic=topic, inputs=inputs, outputs=read_topic(broker.bootstrap, output),
        dead_letters=read_topic(broker.bootstrap, f"{topic}.dlq"),
        observed=observed(client, prefix),
        applied=applied(client, prefix, ((fp, rid) for rid, fp in
                                         expectation.fingerprint_of.items())),
        alerts=alerts(client, prefix, expectation.by_fingerprint), stored=drained.stored,
        log_end=_log_end(inputs, config.partitions),
    )  # fmt: skip
    report = compute(facts, expectation)
    _annotate(report, config, drained, injector, fleet, producer, broker.description)
    trace.stop()
    explain(report, facts, client, prefix)
    lost = vanished(trace, fleet.logs())
    explain_vanished(report, lost, len(trace.pushes), t0_wall, injector.done)
    attribute(report, facts, client, prefix, lost)
    return report


def _log_end(inputs: list[Record], partitions: int) -> dict[int, int]:
    ends = {p: 0 for p in range(partitions)}
    for r in inputs:
        ends[r.partition] = max(ends[r.partition], r.offset + 1)
    return ends


def _annotate(report: Report, config: ChaosConfig, drained: Drained, injector: Injector,
              fleet: Fleet, producer: Producer, broker: str) -> None:  # fmt: skip
    processes = config.workers * config.concurrency
    report.counts.update(
        drained=drained.drained,
        drain_seconds=drained.seconds,
        restore_blocked_seconds=drained.restore_blocked,
        producer_acked=producer.acked,
        producer_resent=producer.resent,
        unplanned_exits=len(fleet.exits),
        output_duplicate_bound=duplicate_bound(
            injector.done, config.batch_size, config.rate, processes
        ),
    )
    failures = []
    for path in fleet.logs():
        if path.exists():
            failures += _FAILED.findall(path.read_text(errors="replace"))
    report.counts["task_failures"] = len(failures)
    report.samples["task_failures"] = [f"{task}: {why[:160]}" for task, why in failures[:10]]
    report.faults = [dataclasses.asdict(f) for f in injector.done]
    report.exits = [dataclasses.asdict(e) for e in fleet.exits]
    report.config = {k: str(v) for k, v in dataclasses.asdict(config).items()}
    report.services = {"broker": broker, "redis": "redis-server, AOF everysec"}


def _keep_or_remove(workdir: Path, keep: Path | None) -> None:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        for name in ("logs", "redis/redis.log"):
            source = workdir / name
            if source.is_dir():
                shutil.copytree(source, keep / name, dirs_exist_ok=True)
            elif source.exists():
                shutil.copy(source, keep / source.name)
    shutil.rmtree(workdir, ignore_errors=True)
