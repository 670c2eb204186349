"""Dead-lettering the items of a stage: a pulled message, or a later item with ``record_id``.

A stage gives up on one item without failing its batch by calling ``dead_letter`` with the
item and the reason; the letter goes to the dead-letter topic of the pipeline the item came
from, with ``workers.*`` headers (and ``workers.stage`` when a stage's isolation sent it).
Nothing about an item's content can make this raise: odd values are written as readable text.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from workers.connections import connections_for
from workers.kafka.codecs import PlainRecord
from workers.kafka.deadletter import DeadLetters, Header
from workers.metrics import record as metrics
from workers.stages import braking

if TYPE_CHECKING:
    from workers.pulling.tickets import Ticket


@dataclass(frozen=True, slots=True)
class MessageRecord(PlainRecord):
    """A handed-off message seen as a record again, for the dead-letter topic. The value is
    the decoded value encoded anew (JSON, text or base64 as it came), not the original bytes."""

    @classmethod
    def of(cls, message: Any, ticket: Ticket | None = None) -> tuple[str, MessageRecord]:
        """(cluster, record) for a pulled message, or a later stage's item that carries
        ``record_id`` (its coordinates come from the id; the item itself becomes the value),
        or, with neither, any item of a batch whose ``ticket`` says where it came from.
        Raises ``ValueError`` only when none of these applies."""
        item = message if isinstance(message, dict) else {"value": message}
        located = _coordinates(item)
        if located is None:
            if ticket is None:
                raise ValueError(
                    f"cannot dead-letter an item without 'id' or 'record_id' outside a "
                    f"pipeline: {_text(item)[:80]}"
                )
            located = (ticket.space.cluster, ticket.space.topic, -1, -1)
        cluster, topic, partition, offset = located
        is_message = "topic" in item and "value" in item
        value = item.get("value") if is_message else item
        return cluster, cls(
            topic=topic,
            partition=partition,
            offset=offset,
            timestamp=_int(item.get("timestamp"), -1) if is_message else -1,
            key=_bytes(item.get("key")) if is_message else None,
            value=None if value is None else _encode(value),
            headers=_headers(item.get("headers")) if is_message else [],
        )


def _coordinates(item: dict[str, Any]) -> tuple[str, str, int, int] | None:
    """(cluster, topic, partition, offset) from a message's ``id`` or an item's
    ``record_id`` (``cluster/topic/partition/offset``; topic names never contain '/')."""
    for name in ("id", "record_id"):
        parts = str(item.get(name) or "").split("/")
        if len(parts) == 4 and all(parts[:2]):
            return parts[0], parts[1], _int(parts[2], -1), _int(parts[3], -1)
    return None


def _int(raw: Any, default: int) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError, OverflowError):
        return default


def _text(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=True, default=repr)
    except (ValueError, RecursionError):
        return repr(value)


def _encode(value: Any) -> bytes:
    """Text as UTF-8, anything else as JSON; lone surrogates and odd types stay readable."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace")
    try:
        return json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError, RecursionError, UnicodeEncodeError):
        return _text(value).encode("utf-8", "backslashreplace")


def _bytes(item: Any) -> bytes | None:
    if item is None:
        return None
    if isinstance(item, dict) and "base64" in item:
        try:
            return base64.b64decode(str(item["base64"]), validate=True)
        except (binascii.Error, ValueError):
            pass
    return (item if isinstance(item, str) else _text(item)).encode("utf-8", "backslashreplace")


def _headers(raw: Any) -> list[Header]:
    out: list[Header] = []
    for pair in raw if isinstance(raw, list) else []:
        if isinstance(pair, (list, tuple)) and len(pair) == 2:
            name = pair[0] if isinstance(pair[0], str) else _text(pair[0])
            out.append((name, _bytes(pair[1]) or b""))
    return out


def dead_letter(
    app: Any,
    refused: Sequence[tuple[Any, str]],
    *,
    stage: str | None = None,
    ticket: Ticket | None = None,
) -> int:
    """Send ``(item, reason)`` pairs to their pipeline's dead-letter topic and wait for the
    broker to confirm them; returns how many were sent. Raises ``RecoverableError`` if the
    broker did not confirm them (retry the task), ``ValueError`` for an item that has no
    coordinates and no ``ticket`` to place it, ``BrakeTripped`` (nothing sent) when called in
    a stage whose pipeline's dead-letter brake is tripped or these letters trip it. In a
    stage, ``ticket`` defaults to its batch's. Confirmed letters count in the worker's
    metrics under ``stage``, by default the stage running here."""
    braking.check(refused)
    ticket = ticket or braking.current_ticket()
    connections = connections_for(app)
    settings = connections.settings
    letters: dict[tuple[str, str], DeadLetters] = {}
    extra: list[Header] = [] if stage is None else [("workers.stage", stage.encode())]
    for item, reason in refused:
        cluster, record = MessageRecord.of(item, ticket)
        if cluster not in settings.clusters:  # an id a stage made up: keep the letter anyway
            if ticket is None:
                raise ValueError(f"item names cluster {cluster!r}, which is not configured")
            cluster = ticket.space.cluster
        if (cluster, record.topic) not in letters:
            target = next(
                (
                    p.dead_letter_topic
                    for p in settings.pipelines.values()
                    if p.cluster == cluster and p.topic == record.topic
                ),
                f"{record.topic}.dlq",
            )
            letters[(cluster, record.topic)] = DeadLetters(
                partial(connections.producer, cluster), cluster, target
            )
        letters[(cluster, record.topic)].send(record, reason, extra)
    sent = sum(dead.flush() for dead in letters.values())
    metrics.dead_lettered(
        ticket.pipeline if ticket is not None else metrics.UNKNOWN,
        stage or braking.current_stage() or metrics.UNKNOWN,
        (reason for _, reason in refused),
    )
    return sent
