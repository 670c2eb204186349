"""``bench.profile``: py-spy raw stacks are put in the right category (a synthetic sample, as
py-spy 0.4 writes it for Python 3.11: qualified names, shortened paths, processes first), and
the µs/event arithmetic. The profiled run itself is not a test."""

from __future__ import annotations

import pytest

from bench import profile as p

MAIN_PID, POOL_PID, BEAT_PID = 100, 101, 200
MAIN = f'process {MAIN_PID}:"python -m celery -A workers.app worker -c 1"'
POOL = f'process {POOL_PID}:"python -m celery -A workers.app worker -c 1"'
BEAT = f'process {BEAT_PID}:"python -m celery -A workers.app beat"'
ROLES = {MAIN_PID: p.MAIN, BEAT_PID: p.BEAT}

WORKLOOP = (
    "_run_module_as_main (<frozen runpy>:198);Worker.workloop (billiard/pool.py:361);"
    "fast_trace_task (celery/app/trace.py:651);"
    "build_tracer.<locals>.trace_task (celery/app/trace.py:453)"
)
PULL = f"{WORKLOOP};pull (workers/pulling/tasks.py:52);run_cycle (workers/pulling/engine.py:160)"
CYCLE = f"{PULL};Puller.cycle (workers/pulling/puller.py:140)"
STAGE = f"{WORKLOOP};Stage.__call__ (workers/stages/base.py:85);Stage._isolated (workers/stages/base.py:180)"  # noqa: E501
THREAD = "Thread._bootstrap (threading.py:995);Thread._bootstrap_inner (threading.py:1038)"

# (stack without its process prefix, process, count, expected category)
CASES = [
    (f"{CYCLE};Puller._read (workers/pulling/puller.py:200);KafkaConsumer.poll "
     "(kafka/consumer/group.py:800);KafkaConsumer._poll_once (kafka/consumer/group.py:850)",
     POOL, 7, p.POLL),
    (f"{THREAD};Thread.run (threading.py:975);NetworkSelector.run_forever "
     "(kafka/net/selector.py:239);NetworkSelector._poll_once (kafka/net/selector.py:602)",
     POOL, 2, p.KAFKA_IO),
    (f"{CYCLE};Puller._take (workers/pulling/puller.py:230);decode_or_reason "
     "(workers/kafka/codecs.py:290);_fast_object (workers/kafka/codecs.py:90)", POOL, 5, p.DECODE),
    (f"{CYCLE};Outbox.flush (workers/pulling/outbox.py:80);CeleryDispatcher.hand_off "
     "(workers/pulling/handoff.py:170);Signature.apply_async (celery/canvas.py:400)",
     POOL, 3, p.HAND_OFF),
    (f"{CYCLE};RedisLedger.snapshot (workers/state/ledger_redis.py:120)", POOL, 4, p.PULL_REST),
    (f"{STAGE};parse (workers/alarms/tasks.py:55);parse_event (workers/alarms/events.py:70)",
     POOL, 6, p.PARSE),
    (f"{STAGE};build (workers/alarms/tasks.py:75);AlertStore.apply (workers/alarms/state.py:200)",
     POOL, 11, p.BUILD_STORE),
    (f"{STAGE};build (workers/alarms/tasks.py:80);_change (workers/alarms/tasks.py:125)",
     POOL, 1, p.BUILD_REST),
    (f"{STAGE};publish (workers/alarms/tasks.py:95);publish_changes (workers/alarms/tasks.py:130)"
     ";AlertStore.claim (workers/alarms/state.py:300)", POOL, 4, p.PUBLISH_STORE),
    (f"{STAGE};publish (workers/alarms/tasks.py:95);publish_changes (workers/alarms/tasks.py:131)"
     ";_send (workers/alarms/tasks.py:197);KafkaProducer.send (kafka/producer/kafka.py:700)",
     POOL, 8, p.PUBLISH_SEND),
    (f"{THREAD};Sender.run (kafka/producer/sender.py:110);Sender.run_once "
     "(kafka/producer/sender.py:150)", POOL, 9, p.SENDER),
    (f"{WORKLOOP};Stage.__call__ (workers/stages/base.py:76);Stage._begin "
     "(workers/stages/base.py:104)", POOL, 2, p.STAGE_FRAME),
    (f"{WORKLOOP};build_tracer.<locals>._dispatch_callbacks_and_chain (celery/app/trace.py:300)"
     ";Signature.apply_async (celery/canvas.py:400)", POOL, 6, p.NEXT_TASK),
    (f"{WORKLOOP};loads (kombu/utils/json.py:90);JSONDecoder.decode (json/decoder.py:337)",
     POOL, 10, p.CELERY),
    ("_run_module_as_main (<frozen runpy>:198);Worker.workloop (billiard/pool.py:361);"
     "pickle_loads (billiard/common.py:114)", POOL, 3, p.CELERY),
    ("something (elsewhere.py:1)", POOL, 1, p.POOL_OTHER),
    ("Hub.create_loop (kombu/asynchronous/hub.py:393);loads (kombu/utils/json.py:90)",
     MAIN, 12, p.MAIN),
    ("Request.execute_using_pool (celery/worker/request.py:700);Pool.apply_async "
     "(billiard/pool.py:1636);AsynPool._create_write_handlers.<locals>.send_job "
     "(celery/concurrency/asynpool.py:960)", MAIN, 5, p.MAIN_POOL),
    ("Beat.tick (celery/beat.py:340);Scheduler.apply_async (celery/beat.py:380)",
     BEAT, 2, p.BEAT),
    # Waits py-spy means to leave out, misjudged because of the qualified names: idle.
    (f"{THREAD};NetworkSelector._poll_once (kafka/net/selector.py:602);EpollSelector.select "
     "(selectors.py:468)", POOL, 20, p.IDLE),
    (f"{STAGE};publish (workers/alarms/tasks.py:95);FutureProduceResult.wait "
     "(kafka/producer/future.py:60);Event.wait (threading.py:629);Condition.wait "
     "(threading.py:331)", POOL, 4, p.IDLE),
]  # fmt: skip


def stack(frames: str, process: str) -> str:
    # A pool process's stacks begin with its parent (the worker's main process).
    prefix = f"{MAIN};{POOL}" if process == POOL else process
    return f"{prefix};{frames}"


def raw_text() -> str:
    return "\n".join(f"{stack(frames, proc)} {n}" for frames, proc, n, _ in CASES) + "\n"


@pytest.mark.parametrize(("frames", "process", "expected"), [(c[0], c[1], c[3]) for c in CASES])
def test_classify(frames: str, process: str, expected: str) -> None:
    assert p.classify(stack(frames, process).split(";"), ROLES) == expected


def test_a_stack_without_a_process_is_other() -> None:
    assert p.classify(["main (x.py:1)", "f (x.py:2)"], ROLES) == p.OTHER


def test_split_takes_the_innermost_process() -> None:
    pid, frames = p.split(stack("a (x.py:1);b (y.py:2)", POOL).split(";"))
    assert pid == POOL_PID
    assert list(frames) == ["a (x.py:1)", "b (y.py:2)"]


def test_matches_a_function_with_or_without_its_class() -> None:
    assert p.matches("KafkaConsumer.poll (kafka/consumer/group.py:800)", "poll@kafka/consumer/")
    assert p.matches("pull (workers/pulling/tasks.py:52)", "pull@workers/pulling/tasks.py")
    assert not p.matches("pull_more (workers/pulling/tasks.py:52)", "pull@workers/pulling/")
    assert not p.matches("publish_changes (workers/alarms/tasks.py:9)", "publish@workers/alarms")
    assert p.matches("anything (celery/app/trace.py:1)", "@celery/")
    assert not p.matches('process 1:"python"', "@celery/")


def test_parse_raw_sums_repeated_stacks_and_skips_junk() -> None:
    text = "a (x.py:1);b (x.py:2) 3\na (x.py:1);b (x.py:2) 4\n\nnot a sample line\n"
    assert p.parse_raw(text) == {("a (x.py:1)", "b (x.py:2)"): 7}


def test_tally_counts_every_category_once_in_table_order() -> None:
    counts = p.tally([raw_text()], ROLES)
    expected: dict[str, int] = {}
    for _, _, n, category in CASES:
        expected[category] = expected.get(category, 0) + n
    assert counts == expected
    order = [c for c in (*p.CATEGORIES, p.IDLE) if c in expected]
    assert list(counts) == order


def test_per_event_leaves_idle_out() -> None:
    us = p.per_event({p.PARSE: 200, p.MAIN: 50, p.IDLE: 999}, rate=100, events=1000)
    # 200 samples at 100 Hz = 2 s of CPU over 1000 events = 2000 µs/event
    assert us == {p.PARSE: 2000.0, p.MAIN: 500.0}


def test_scaled_keeps_shares_within_a_role_and_totals_the_cpu() -> None:
    sampled = {p.PARSE: 30.0, p.CELERY: 10.0, p.MAIN: 20.0, p.MAIN_POOL: 20.0, p.BEAT: 5.0}
    cpu = {"worker pool": 20.0, "worker main": 10.0, "beat": 5.0}
    assert p.scaled(sampled, cpu) == {
        p.PARSE: 15.0, p.CELERY: 5.0, p.MAIN: 5.0, p.MAIN_POOL: 5.0, p.BEAT: 5.0,
    }  # fmt: skip


def test_side_by_side_lines_up_the_runs() -> None:
    run = {
        "execution": "chain",
        "us_per_event": {p.PARSE: 4.0, p.MAIN: 2.0},
        "cpu_us_per_event": {p.PARSE: 3.0, p.MAIN: 1.0},
        "services_us_per_event": {"redis-server": 4.0},
    }
    other = {**run, "execution": "fused", "us_per_event": {p.PARSE: 2.0},
             "cpu_us_per_event": {p.PARSE: 2.0}}  # fmt: skip
    lines = p.side_by_side([run, other]).splitlines()
    assert lines[0].startswith("| category | chain: sampled | chain: CPU µs/event")
    assert "fused: share" in lines[0]
    assert lines[2] == f"| {p.PARSE} | 4.0 | 3.0 | 38% | 2.0 | 2.0 | 33% |"
    assert lines[3] == f"| {p.MAIN} | 2.0 | 1.0 | 12% | 0.0 | 0.0 | 0% |"
    assert lines[4] == "| redis-server (/proc) |  | 4.0 | 50% |  | 4.0 | 67% |"
    assert lines[-1] == "| **total** | **6.0** | **8.0** | | **2.0** | **6.0** | |"
