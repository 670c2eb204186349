"""What a worker's and Beat's log lines say about where they come from.

Every record gets the current Celery task's name and id (``task_name``, ``task_id``; None
outside a task) and, where they apply, the ``pipeline``, ``topic``, ``partition`` and
``offsets`` of the work at hand: set by ``log_context`` around a pull or a stage, or given by
a log call's ``extra``. Then, with ``workers_log_format``:

- ``"text"`` (the default): the handlers keep their format (Celery's ``worker_log_format``), and
  a line logged while a task runs starts with ``task_name[task_id]:`` as Celery's own task
  log lines do (Celery prefixes only the ``get_task_logger`` loggers; this covers the package's
  and the libraries' loggers too).
- ``"json"``: one JSON object per line (ASCII, so no byte of a record can split it): ``time``
  (UTC, ISO 8601), ``level``, ``logger``, ``process``, ``message``, then ``task_name``,
  ``task_id``, ``pipeline``, ``topic``, ``partition``, ``offsets`` when set, and ``exception``
  (the traceback) when there is one.

Secrets are masked before either (``workers.runtime.logmask``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

from celery import signals
from celery._state import get_current_task
from celery.app.log import TaskFormatter

CONTEXT_FIELDS = ("pipeline", "topic", "partition", "offsets")
FORMATS = ("text", "json")

_CONTEXT: ContextVar[Mapping[str, Any]] = ContextVar(
    "workers_log_context", default=MappingProxyType({})
)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Records logged inside carry ``fields`` (None values are left out); nests."""
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def at(partition: int, first: int | None = None, last: int | None = None) -> dict[str, Any]:
    """A log call's ``extra`` for one partition, and the offsets ``[first, last]`` it is about
    (``first`` alone: that one offset)."""
    if first is None:
        return {"partition": partition}
    last = first if last is None else last
    return {"partition": partition, "offsets": {partition: [first, last]}}


def slices_context(slices: Any) -> dict[str, Any]:
    """``partition`` (when one) and ``offsets`` (``{partition: [first, last]}``) of a batch's
    ledger slices (anything with ``partition``, ``start`` and ``end``)."""
    offsets: dict[int, list[int]] = {}
    for s in slices:
        first, last = offsets.get(s.partition, [s.start, s.end - 1])
        offsets[s.partition] = [min(first, s.start), max(last, s.end - 1)]
    return {"partition": next(iter(offsets)) if len(offsets) == 1 else None, "offsets": offsets}


class TaskContext(logging.Filter):
    """Adds the task's name and id and the ``log_context`` fields to every record (a field
    given by the log call's ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = record.__dict__
        if "task_id" not in fields or fields["task_id"] in (None, "???"):
            task = get_current_task()
            request = getattr(task, "request", None) if task is not None else None
            task_id = getattr(request, "id", None)
            fields["task_id"] = task_id
            fields["task_name"] = getattr(task, "name", None) if task_id else None
        for name, value in _CONTEXT.get().items():
            fields.setdefault(name, value)
        return True


class TaskPrefix(logging.Formatter):
    """Wraps a handler's formatter: a record logged while a task runs reads
    ``task_name[task_id]: message``, unless it comes from Celery itself (whose task lines
    carry the id already)."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        task_id = getattr(record, "task_id", None)
        if not task_id or task_id == "???" or record.name.split(".")[0] == "celery":
            return self.inner.format(record)
        msg, args = record.msg, record.args
        record.msg = f"{getattr(record, 'task_name', None)}[{task_id}]: {record.getMessage()}"
        record.args = ()
        try:
            return self.inner.format(record)
        finally:
            record.msg, record.args = msg, args


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "message": record.getMessage(),
        }
        fields = record.__dict__
        for name in ("task_name", "task_id", *CONTEXT_FIELDS):
            value = fields.get(name)
            if value is not None and value != "???":
                doc[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exception"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return json.dumps(doc, default=str, ensure_ascii=True)


def install(handlers: list[logging.Handler], log_format: str) -> None:
    """Give each handler the task context and the format (idempotent)."""
    for handler in handlers:
        if not any(isinstance(f, TaskContext) for f in handler.filters):
            handler.addFilter(TaskContext())
        current = handler.formatter
        if log_format == "json":
            if not isinstance(current, JsonFormatter):
                handler.setFormatter(JsonFormatter())
        elif not isinstance(current, TaskPrefix | TaskFormatter):  # the latter has the prefix
            handler.setFormatter(TaskPrefix(current))


def connect(app: Any) -> None:
    """Install on the handlers Celery sets up in this app's worker and Beat processes."""

    def on_setup(logger: logging.Logger | None = None, **_: Any) -> None:
        target = logger or logging.getLogger()
        install(list(target.handlers), configured_format(app))

    signals.after_setup_logger.connect(on_setup, weak=False)
    signals.after_setup_task_logger.connect(on_setup, weak=False)


def configured_format(app: Any) -> str:
    """The app's ``workers_log_format``; "text" while the settings do not load (the worker
    then refuses to start with the one-line error naming the bad setting)."""
    from workers.config import settings_for
    from workers.exceptions import ConfigError

    try:
        return settings_for(app).log_format
    except ConfigError:
        return "text"
