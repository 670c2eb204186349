"""``workers produce``: JSON lines from a file or stdin to a topic, confirmed by the broker."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from kafka.errors import KafkaError

from workers.config import Settings
from workers.config.masking import clip
from workers.ops.context import Ops, OpsError
from workers.pulling.topics import matching

# Sends in flight before the producer is flushed and their results checked (bounds memory).
WINDOW = 5000
# Longest line read whole: no pipeline takes a larger value (max_value_bytes is 64 MiB at
# most), and reading a line without end into memory would exhaust it.
MAX_LINE = 64 << 20
# Records remembered one by one (line, partition, offset); the rest only in their partition's
# span, so a file of millions of lines does not fill memory.
RECORDS_LISTED = 1000


@dataclass
class Span:
    """The records sent to one partition: how many, and their lowest and highest offset."""

    records: int
    first_offset: int
    last_offset: int


@dataclass
class Produced:
    """``invalid``: (line number, reason) of lines not sent; ``failed``: sends the broker
    refused, with the first reason. ``partitions``: where the sent records went, per
    partition; ``records``: (line number, partition, offset) of the first ``RECORDS_LISTED``
    records sent, in line order."""

    sent: int = 0
    invalid: list[tuple[int, str]] = field(default_factory=list)
    failed: int = 0
    first_failure: str = ""
    without_key: int = 0
    partitions: dict[int, Span] = field(default_factory=dict)
    records: list[tuple[int, int, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.invalid and not self.failed

    def placed(self, line: int, partition: int, offset: int) -> None:
        """Count one record the broker confirmed at ``partition``/``offset``."""
        self.sent += 1
        span = self.partitions.get(partition)
        if span is None:
            self.partitions[partition] = Span(1, offset, offset)
        else:
            span.records += 1
            span.first_offset = min(span.first_offset, offset)
            span.last_offset = max(span.last_offset, offset)
        if len(self.records) < RECORDS_LISTED:
            self.records.append((line, partition, offset))


def default_cluster(settings: Settings, topic: str) -> str:
    """The cluster of the pipeline that reads ``topic`` (as its topic, a listed one or one
    matching its pattern), or the only configured cluster."""
    readers = {p.cluster for p in settings.pipelines.values()
               if p.topic == topic or (p.multi and matching(p, [topic], ()))}  # fmt: skip
    if len(readers) == 1:
        return readers.pop()
    if len(settings.clusters) == 1:
        return next(iter(settings.clusters))
    raise OpsError(
        f"cannot tell which cluster topic {topic!r} is on; pass --cluster "
        f"(one of {sorted(settings.clusters)})"
    )


def lines_of(stream: IO[bytes], limit: int = MAX_LINE) -> Iterator[bytes]:
    """The lines of ``stream``; a line longer than ``limit`` bytes comes as its first
    ``limit + 1`` bytes (so it is seen as too long) and the rest is skipped unread."""
    while line := stream.readline(limit + 1):
        if len(line) > limit and not line.endswith(b"\n"):
            while (rest := stream.readline(limit)) and not rest.endswith(b"\n"):
                pass
        yield line


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


def _parse(text: bytes) -> tuple[Any, str]:
    """The JSON value of ``text``, or why it is not JSON."""
    try:
        # NaN and Infinity are Python's extension, not JSON: the pipeline would refuse them.
        return json.loads(text, parse_constant=_not_json), ""
    except RecursionError:
        return None, "not JSON: nested too deeply"
    except ValueError as exc:
        return None, f"not JSON: {clip(str(exc), 200)}"


def key_of(value: Any, path: str) -> bytes | None:
    """The value at a dotted ``path`` inside a JSON object, as the record key."""
    node = value
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if node is None or isinstance(node, dict | list):
        return None
    return (node if isinstance(node, str) else json.dumps(node)).encode()


def produce_lines(
    ops: Ops,
    topic: str,
    cluster: str,
    lines: Iterable[bytes],
    key_field: str | None = None,
    raw: bool = False,
    progress: Callable[[int], None] = lambda n: None,
) -> Produced:
    """Send each non-blank line as one record (its bytes without the line end and surrounding
    whitespace). Lines that are not JSON (nested too deeply, NaN, ...) or longer than
    ``MAX_LINE`` are refused, JSON ones unless ``raw``. ``progress`` gets the byte count of
    each line read."""
    producer = ops.connections.producer(cluster)
    result = Produced()
    pending: list[tuple[int, Any]] = []  # (line number, future)
    for number, line in enumerate(lines, start=1):
        progress(len(line))
        text = line.strip()
        if not text:
            continue
        if len(line) > MAX_LINE:
            result.invalid.append((number, f"longer than {MAX_LINE:,} bytes"))
            continue
        value: Any = None
        if not raw or key_field:
            value, why = _parse(text)
            if why and not raw:
                result.invalid.append((number, why))
                continue
        key = key_of(value, key_field) if key_field else None
        if key_field and key is None:
            result.without_key += 1
        pending.append((number, producer.send(topic, value=text, key=key)))
        if len(pending) >= WINDOW:
            _settle(producer, pending, result)
    _settle(producer, pending, result)
    return result


def _settle(producer: Any, pending: list[tuple[int, Any]], result: Produced) -> None:
    producer.flush(timeout=60)
    for number, future in pending:
        try:
            meta = future.get(timeout=60)
        except KafkaError as exc:
            result.failed += 1
            result.first_failure = result.first_failure or f"{exc}"
        else:
            result.placed(number, meta.partition, meta.offset)
    pending.clear()
