"""The dead-letter destination: records that cannot be decoded go to a Kafka topic, with why.

A dead letter keeps the original key, value and headers, and adds ``workers.*`` headers: the
reason and the record's cluster, topic, partition, offset and timestamp. Sends are confirmed
by ``flush`` before the offsets past them are committed, so a dead letter is never lost.
A value too large for the dead-letter topic is sent empty (header ``workers.value_dropped``
says how many bytes it had), so one oversized record cannot stall a partition.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kafka.errors import KafkaError, MessageSizeTooLargeError

from workers.exceptions import RecoverableError
from workers.kafka.codecs import Record
from workers.runtime.logformat import at

logger = logging.getLogger(__name__)

Header = tuple[str, bytes]


@dataclass(frozen=True, slots=True)
class _Pending:
    record: Record
    reason: str
    future: Any
    extra: Sequence[Header] = ()


REASON_LIMIT = 200


def short_reason(text: str, limit: int = REASON_LIMIT) -> str:
    """A reason fit for a header and a log line: one line, at most ``limit`` characters,
    control characters and lone surrogates escaped (so it always encodes as UTF-8)."""
    flat = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    flat = flat.encode("utf-8", "backslashreplace").decode("utf-8")
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _safe_headers(headers: Any) -> list[Header]:
    """A record's own headers as the producer needs them (text names, bytes values);
    anything else is kept readable rather than allowed to make the send fail."""
    out: list[Header] = []
    for item in headers or ():
        try:
            name, value = item
        except (TypeError, ValueError):
            continue
        text = name if isinstance(name, str) else repr(name)
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        if isinstance(value, str):
            value = value.encode("utf-8", "backslashreplace")
        elif value is not None and not isinstance(value, bytes):
            value = repr(value).encode("utf-8", "backslashreplace")
        out.append((text, value if value is not None else b""))
    return out


def dead_letter_headers(record: Record, cluster: str, reason: str) -> list[Header]:
    """The headers a dead letter carries in addition to the record's own."""
    return [
        ("workers.reason", short_reason(reason).encode()),
        ("workers.cluster", cluster.encode()),
        ("workers.topic", record.topic.encode()),
        ("workers.partition", str(record.partition).encode()),
        ("workers.offset", str(record.offset).encode()),
        ("workers.timestamp", str(record.timestamp).encode()),
    ]


class DeadLetters:
    """Sends refused records of one pipeline to its dead-letter topic on ``producer()``.

    ``send`` does not block; ``flush`` waits for every send since the last flush and raises
    ``RecoverableError`` if any failed (the caller then commits nothing past them).
    """

    def __init__(
        self, producer: Callable[[], Any], cluster: str, topic: str, timeout: float = 30.0
    ) -> None:
        self._producer = producer  # called on first use: most pulls see no bad record
        self.cluster = cluster
        self.topic = topic
        self.timeout = timeout
        self._pending: list[_Pending] = []
        self.sent = 0

    def send(self, record: Record, reason: str, extra: Sequence[Header] = ()) -> None:
        """Send one dead letter (not blocking). Raises ``RecoverableError`` if the producer
        refuses it at once (no metadata for the topic in time, for example)."""
        reason = short_reason(reason)
        logger.warning(
            "%s[%d]@%d is a dead letter: %s", record.topic, record.partition, record.offset, reason,
            extra=at(record.partition, record.offset),
        )  # fmt: skip
        try:
            future = self._send(record, reason, record.value, extra)
        except MessageSizeTooLargeError:  # kafka-python 3 refuses it before sending
            future = self._send_without_value(record, reason, extra)
        self._pending.append(_Pending(record, reason, future, extra))

    def _send(
        self, record: Record, reason: str, value: bytes | None, extra: Sequence[Header] = ()
    ) -> Any:
        headers = _safe_headers(record.headers) + dead_letter_headers(record, self.cluster, reason)
        if value is None and record.key is None:
            value = b""  # Kafka needs a key or a value; the reason header says what it was
        try:
            return self._producer().send(
                self.topic, value=value, key=record.key, headers=headers + list(extra)
            )
        except MessageSizeTooLargeError:
            raise
        except KafkaError as exc:
            raise RecoverableError(f"dead letter to {self.topic!r} not sent: {exc!r}") from exc

    @property
    def pending(self) -> int:
        return len(self._pending)

    def flush(self) -> int:
        """Wait for the sends in flight; returns how many were confirmed.

        Raises ``RecoverableError`` if any failed; they are then forgotten, because the caller
        commits nothing past them and reads (and dead-letters) those records again.
        """
        if not self._pending:
            return 0
        pending, self._pending = self._pending, []
        confirmed = self._wait(pending)
        too_large = [p for p in pending if _too_large(p.future)]
        if too_large:
            retried = [
                _Pending(p.record, p.reason, self._send_without_value(p.record, p.reason, p.extra))
                for p in too_large
            ]
            confirmed += self._wait(retried)
            pending = [p for p in pending if not _too_large(p.future)] + retried
        failed = [p for p in pending if not p.future.succeeded()]
        if failed:
            first = failed[0]
            raise RecoverableError(
                f"{len(failed)} dead letters to {self.topic!r} failed, first "
                f"{first.record.topic}[{first.record.partition}]@{first.record.offset}: "
                f"{first.future.exception!r}"
            )
        self.sent += len(pending)
        return confirmed

    def _send_without_value(self, record: Record, reason: str, extra: Sequence[Header] = ()) -> Any:
        size = len(record.value or b"")
        logger.warning(
            "%s[%d]@%d: value of %d bytes is too large for %r; dead letter sent without it",
            record.topic, record.partition, record.offset, size, self.topic,
            extra=at(record.partition, record.offset),
        )  # fmt: skip
        try:
            dropped = ("workers.value_dropped", str(size).encode())
            return self._send(record, reason, b"", [*extra, dropped])
        except MessageSizeTooLargeError as exc:  # the key or headers alone are too large
            raise RecoverableError(
                f"{record.topic}[{record.partition}]@{record.offset}: cannot dead-letter even "
                f"without its value: {exc!r}; raise the producer's max_request_size"
            ) from exc

    def _wait(self, pending: Sequence[_Pending]) -> int:
        try:
            self._producer().flush(timeout=self.timeout)
        except KafkaError as exc:
            raise RecoverableError(
                f"dead letters to {self.topic!r} not confirmed: {exc!r}"
            ) from exc
        return sum(1 for p in pending if p.future.succeeded())


def _too_large(future: Any) -> bool:
    return bool(future.failed()) and isinstance(future.exception, MessageSizeTooLargeError)
