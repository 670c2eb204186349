"""The one exception tree of the package; library errors are translated into it at the boundary."""

from __future__ import annotations


class WorkersError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(WorkersError):
    """A setting is missing, malformed or dangerous.

    The message is one line: the key path, the offending value (secrets masked) and the
    expected form.
    """

    def __init__(self, key: str, value: object, expected: str) -> None:
        self.key = key
        self.value = value
        self.expected = expected
        super().__init__(f"{key}: got {value!r}; expected {expected}")


class RecoverableError(WorkersError):
    """A service (Kafka, Redis, the Celery broker) is briefly unavailable; retrying may succeed."""


class OffsetStoreError(WorkersError):
    """The offset store refused or failed an operation in a way a retry will not fix."""


class Fenced(OffsetStoreError):
    """A fenced offset write was refused: the lease is gone (``not_owner``, ``fenced``) or an
    operator reset won (``reset``). The writer must stop reading those partitions."""

    def __init__(self, message: str, status: str) -> None:
        self.status = status
        super().__init__(message)


class InvalidRecord(WorkersError):
    """A record could not be decoded or validated; it belongs in the dead-letter destination."""

    def __init__(self, topic: str, partition: int, offset: int, reason: str) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.reason = reason
        super().__init__(f"{topic}[{partition}]@{offset}: {reason}")


class BrakeTripped(WorkersError):
    """The pipeline's dead-letter brake is tripped, or the dead letters at hand trip it: they
    were not sent, and the batch that holds them must stay unfinished (``workers.state.brake``).
    """

    def __init__(self, pipeline: str, source: str) -> None:
        self.pipeline = pipeline
        self.source = source
        super().__init__(f"pipeline {pipeline!r}: the dead-letter brake is tripped")
