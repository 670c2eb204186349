"""What ``publish`` writes to the output topic on the test Kafka: each change as compact JSON
(orjson's, or the standard library's for what orjson refuses), keyed by fingerprint, on the
partition kafka-python's default partitioner gives that key (chosen once per alert of a batch)."""

from __future__ import annotations

import json
import math
import time

from kafka.partitioner.default import murmur2

from tests.integration.alarm_stages_support import Stages, good, message, read_all


def test_changes_go_to_the_default_partitioners_partition_as_compact_json(
    stages: Stages,
) -> None:
    # Arrange: 40 alerts, three changes each, in one batch
    t = math.floor(time.time()) - 100
    values = [good(f"e{n}", t + n // 40, host=f"host-{n % 40}") for n in range(120)]
    events = stages.run("parse", [message(stages, n, v) for n, v in enumerate(values)])
    changes = stages.run("build", events)

    # Act
    stages.run("publish", changes)
    records = read_all(stages, stages.output)

    # Assert
    assert len(records) == len(changes) == 120
    partitions = sorted({r.partition for r in records})
    assert partitions == [0, 1, 2]
    for record in records:
        assert record.partition == (murmur2(record.key) & 0x7FFFFFFF) % 3
        compact = json.dumps(json.loads(record.value), separators=(",", ":"), ensure_ascii=False)
        assert record.value == compact.encode()
    by_id = {c["change_id"]: c for c in changes}
    assert sorted(json.loads(r.value)["change_id"] for r in records) == sorted(by_id)
    assert all(json.loads(r.value) == by_id[json.loads(r.value)["change_id"]] for r in records)


def test_a_change_orjson_refuses_is_sent_as_the_standard_library_writes_it(
    stages: Stages,
) -> None:
    # Arrange: a lone surrogate in the description (orjson refuses it; the standard library
    # writes it escaped), next to a plain event
    t = math.floor(time.time()) - 100
    odd = dict(good("odd", t, host="odd"), description="half \ud800 a pair")
    values = [odd, dict(good("plain", t, host="plain"), description="café ✓")]
    events = stages.run("parse", [message(stages, n, v) for n, v in enumerate(values)])
    changes = stages.run("build", events)

    # Act
    stages.run("publish", changes)
    records = read_all(stages, stages.output)

    # Assert
    sent = {json.loads(r.value)["alert"]["description"]: r.value for r in records}
    assert set(sent) == {"half \ud800 a pair", "café ✓"}
    assert b"\\ud800" in sent["half \ud800 a pair"]
    assert "café ✓".encode() in sent["café ✓"]  # orjson's: UTF-8, not escaped
    by_id = {c["change_id"]: c for c in changes}
    assert len(records) == len(changes) == 2
    assert all(json.loads(r.value) == by_id[json.loads(r.value)["change_id"]] for r in records)
