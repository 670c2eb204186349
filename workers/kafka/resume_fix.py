"""A resumed partition is fetched again (a kafka-python 3.0 fix, installed by ``install()``).

kafka-python 3.0 parks the records it had fetched for a partition when the partition is
paused, and gives them back once it is resumed (KAFKA-7548) — but only when its
``_next_partition_records`` slot is ``None``. Once the records of the partition it was
returning are used up, that slot holds an *empty* ``PartitionRecords``, not ``None``, so the
parked records are never given back; and a partition with parked records is never fetched
again. A resumed partition then returns nothing, for the life of the consumer.

The pull pauses a partition whenever it has ``max_in_flight`` batches unfinished, and a
re-read pauses every other partition: measured here, a long-lived consumer read one round of
``max_in_flight`` batches per partition and then nothing until it was replaced, and a
100,000-record chaos run did not drain in 20 minutes. The fix empties the slot before each
``fetched_records`` call when what it holds is used up: everywhere else kafka-python treats an
empty ``PartitionRecords`` and ``None`` alike, so nothing else changes.
``tests/integration/test_kafka_resume_fix.py`` shows the bug without the fix and its absence
with it, on the real broker. Versions without parking (kafka-python 2.x) are left alone.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from kafka.consumer import fetcher

__all__ = ["install", "installed"]

_MARK = "_workers_resume_fix"
_LOCK = threading.Lock()


def _patched(original: Any) -> Any:
    @functools.wraps(original)
    def fetched_records(self: Any, *args: Any, **kwargs: Any) -> Any:
        current = getattr(self, "_next_partition_records", None)
        if current is not None and not current:  # used up: let the parked records back in
            self._next_partition_records = None
        return original(self, *args, **kwargs)

    setattr(fetched_records, _MARK, True)
    return fetched_records


def _affected() -> bool:
    """kafka-python parks the records of paused partitions (3.0 and later)."""
    return "_paused_partition_records" in fetcher.Fetcher.__init__.__code__.co_names


def installed() -> bool:
    return bool(getattr(fetcher.Fetcher.fetched_records, _MARK, False))


def install() -> None:
    """Patch ``Fetcher.fetched_records`` once per process (idempotent, thread-safe)."""
    with _LOCK:
        if installed() or not _affected():
            return
        fetcher.Fetcher.fetched_records = _patched(fetcher.Fetcher.fetched_records)


def uninstall() -> None:
    """Undo ``install()`` (for tests that show the bug)."""
    with _LOCK:
        current = fetcher.Fetcher.fetched_records
        if getattr(current, _MARK, False):
            fetcher.Fetcher.fetched_records = current.__wrapped__
