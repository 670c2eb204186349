"""The Redis transport's envelope JSON (``workers.runtime.kombu_json``): what it writes reads
back, with kombu's decoder, exactly as what kombu alone writes."""

from __future__ import annotations

import base64
import datetime
import decimal
import math
import uuid
from typing import Any

import pytest
from kombu.transport import redis as kombu_redis
from kombu.utils import json as kombu_json

from workers.runtime import kombu_json as fast

ENVELOPE = {
    "body": base64.b64encode(b'[{"id": "c/t/0/1", "value": {"n": 1}}]').decode(),
    "content-encoding": "utf-8",
    "content-type": "application/json",
    "headers": {
        "lang": "py", "task": "workers.stages.fused", "id": "3f6c", "eta": None,
        "retries": 0, "timelimit": [150.0, 120.0], "ignore_result": False,
        "workers_ticket": {"v": 1, "slices": [[0, "b1", 0, 500]], "stage": [0, 1]},
        "argsrepr": "([<500 messages: ü .. 日本>],)",
    },
    "properties": {"delivery_tag": "t", "priority": 0, "body_encoding": "base64",
                   "delivery_info": {"exchange": "", "routing_key": "q"}},
}  # fmt: skip


class Text(str):
    pass


VALUES: dict[str, Any] = {
    "envelope": ENVELOPE,
    "list of a message and its route": [ENVELOPE, "exchange", "key"],
    "tuple": (1, "a", None),
    "datetime": {"eta": datetime.datetime(2026, 12, 4, 1, 2, 3, tzinfo=datetime.UTC)},
    "date and time": [datetime.date(2026, 12, 4), datetime.time(1, 2, 3)],
    "uuid": {"id": uuid.UUID("12345678-1234-5678-1234-567812345678")},
    "decimal": {"amount": decimal.Decimal("1.10")},
    "utf-8 bytes": {"raw": b"caf\xc3\xa9"},
    "other bytes": {"raw": b"\xff\xfe"},
    "nan": {"x": float("nan")},
    "infinity": [float("inf"), float("-inf")],
    "integer past 64 bits": {"n": 2**70},
    "negative integer past 64 bits": -(2**64),
    "str subclass": {"name": Text("x")},
    "integer keys": {1: "one"},
    "lone surrogate": {"s": "a\ud800b"},
    "marker text in a string": {"note": 'see "__type__" here'},
    "a dict shaped like a marker": {"__type__": "decimal", "__value__": "1.5"},
    "deep": [[[[[[[[[[[[{"a": [1]}]]]]]]]]]]]],
    "empty": {},
}


def same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN and types compared too."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.mark.parametrize("name", sorted(VALUES))
def test_what_it_writes_reads_back_as_what_kombu_writes(name: str) -> None:
    value = VALUES[name]
    expected = kombu_json.loads(kombu_json.dumps(value))

    encoded = fast.dumps(value)
    text = encoded if isinstance(encoded, str) else encoded.decode()

    assert same(kombu_json.loads(text), expected)


def test_plain_envelopes_take_the_fast_path_and_typed_values_do_not() -> None:
    assert isinstance(fast.dumps(ENVELOPE), bytes)  # orjson's
    assert isinstance(fast.dumps(VALUES["datetime"]), str)  # kombu's, with its marker
    assert isinstance(fast.dumps(VALUES["lone surrogate"]), str)


def test_install_points_the_redis_transport_at_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kombu_redis, "dumps", kombu_json.dumps)

    fast.install()
    fast.install()  # again: nothing changes

    assert fast.installed()
    assert kombu_redis.dumps is fast.dumps
