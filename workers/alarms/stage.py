"""What any stage of an alarm chain may use: dead-lettering single messages.

A stage is a Celery task that takes a list of JSON dicts and returns a list of JSON dicts.
To give up on one item without failing the batch, call ``dead_letter`` with the item (a
message as the pull handed it off, or a later item that carries ``record_id``, such as an
event) and the reason; raise ``RecoverableError`` to have the task retried.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from workers.codecs import PlainRecord
from workers.connections import connections_for
from workers.deadletter import DeadLetters


@dataclass(frozen=True, slots=True)
class MessageRecord(PlainRecord):
    """A handed-off message seen as a record again, for the dead-letter topic. The value is
    the decoded value encoded anew (JSON, text or base64 as it came), not the original bytes."""

    @classmethod
    def of(cls, message: dict[str, Any]) -> MessageRecord:
        """From a pulled message, or from a later stage's item that carries ``record_id``
        (its coordinates come from the id; the item itself becomes the value)."""
        if "topic" not in message:
            _, topic, partition, offset = str(message["record_id"]).split("/")
            message = {"topic": topic, "partition": partition, "offset": offset,
                       "id": message["record_id"], "value": message}  # fmt: skip
        value = message.get("value")
        if isinstance(value, str):
            data: bytes | None = value.encode()
        else:
            data = None if value is None else json.dumps(value, ensure_ascii=False).encode()
        return cls(
            topic=message["topic"],
            partition=int(message["partition"]),
            offset=int(message["offset"]),
            timestamp=int(message.get("timestamp") or -1),
            key=_bytes(message.get("key")),
            value=data,
            headers=[(name, _bytes(v) or b"") for name, v in message.get("headers") or []],
        )


def _bytes(item: Any) -> bytes | None:
    if item is None:
        return None
    if isinstance(item, dict) and "base64" in item:
        return base64.b64decode(item["base64"])
    return str(item).encode()


def dead_letter(app: Any, refused: Sequence[tuple[dict[str, Any], str]]) -> int:
    """Send ``(message, reason)`` pairs to their pipeline's dead-letter topic and wait for the
    broker to confirm them. Raises ``RecoverableError`` if it did not (retry the task)."""
    connections = connections_for(app)
    settings = connections.settings
    letters: dict[tuple[str, str], DeadLetters] = {}
    for message, reason in refused:
        record = MessageRecord.of(message)
        cluster = str(message.get("id") or message["record_id"]).split("/", 1)[0]
        topic = record.topic
        if (cluster, topic) not in letters:
            target = next(
                (
                    p.dead_letter_topic
                    for p in settings.pipelines.values()
                    if p.cluster == cluster and p.topic == topic
                ),
                f"{topic}.dlq",
            )
            letters[(cluster, topic)] = DeadLetters(
                partial(connections.producer, cluster), cluster, target
            )
        letters[(cluster, topic)].send(record, reason)
    return sum(dead.flush() for dead in letters.values())
