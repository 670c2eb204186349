"""The multiprocess directory: where every process of one worker writes its metric files.

``prometheus_client`` keeps each process's values in files named by kind and pid
(``counter_1234.db``, ``gauge_livesum_1234.db``); the worker's endpoint sums them. One worker
owns a directory: a configured one is locked (a second worker on it is refused) and emptied
of the files of earlier runs at start; the default is a fresh temporary directory, removed
at shutdown. A process that is gone leaves its counters (they still count) but not its
gauges (``mark_dead``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

from prometheus_client import multiprocess, values

from workers.exceptions import WorkersError

ENV = "PROMETHEUS_MULTIPROC_DIR"
LOCK = ".lock"
# prometheus_client's multiprocess helpers are untyped.
_multiprocess_value: Any = values.MultiProcessValue
_mark_process_dead: Any = multiprocess.mark_process_dead


class MetricsUnavailable(WorkersError):
    """This worker cannot keep metrics; the message is one line that says why."""


@dataclass(frozen=True, slots=True)
class Directory:
    path: str
    temporary: bool
    lock_fd: int | None = None


def prepare(configured: str | None) -> Directory:
    """The directory of this worker's metric files, empty of metric files: ``configured``
    (created if missing, locked against a second worker), or a fresh temporary one. Raises
    ``MetricsUnavailable`` naming ``workers_metrics_dir`` when it cannot be used."""
    if configured is None:
        try:
            return Directory(tempfile.mkdtemp(prefix="workers-metrics-"), temporary=True)
        except OSError as exc:
            raise MetricsUnavailable(
                f"metrics: cannot create a temporary directory (workers_metrics_dir is not "
                f"set): {exc.strerror or exc}"
            ) from exc
    fd: int | None = None
    try:
        if os.path.lexists(configured) and not os.path.isdir(configured):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        os.makedirs(configured, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(configured, LOCK), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _remove_files(configured)
    except OSError as exc:
        if fd is not None:
            os.close(fd)
        busy = exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK)
        why = "another worker uses it" if busy else (exc.strerror or str(exc))
        raise MetricsUnavailable(
            f"metrics: workers_metrics_dir {configured!r} cannot be used: {why}"
        ) from exc
    return Directory(configured, temporary=False, lock_fd=fd)


def _remove_files(path: str) -> None:
    """Metric files of an earlier run would count again: only ``*.db`` files go."""
    for name in glob.glob(os.path.join(glob.escape(path), "*.db")):
        with contextlib.suppress(FileNotFoundError):
            os.remove(name)


def release(directory: Directory) -> None:
    """Give the directory back: unlock it, or remove it if it was a temporary one."""
    if directory.lock_fd is not None:
        with contextlib.suppress(OSError):
            os.close(directory.lock_fd)
    if directory.temporary:
        shutil.rmtree(directory.path, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class Activation:
    """What ``activate`` replaced, for ``deactivate``."""

    previous_env: str | None
    previous_class: object


def activate(path: str) -> Activation:
    """Make metrics created from now on (here, and in processes forked from here) write their
    values to files in ``path``. ``prometheus_client`` picks its value class when it is first
    imported, from ``PROMETHEUS_MULTIPROC_DIR``, and reads that variable again for each file
    it opens; it may have been imported before the directory was known, so the class is
    switched here too."""
    done = Activation(os.environ.get(ENV), values.ValueClass)
    os.environ[ENV] = path
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = _multiprocess_value()
    return done


def deactivate(activation: Activation) -> None:
    """Undo ``activate`` (at worker shutdown, and in tests)."""
    if activation.previous_env is None:
        os.environ.pop(ENV, None)
    else:
        os.environ[ENV] = activation.previous_env
    values.ValueClass = activation.previous_class


def mark_dead(path: str, pid: int) -> None:
    """A process of the worker ended: its gauges leave the sums (its counters stay). The
    process itself and the next scrape may both do it: the second finds nothing to remove."""
    with contextlib.suppress(FileNotFoundError):
        _mark_process_dead(pid, path)


def sweep(path: str) -> list[int]:
    """Mark dead the processes whose gauge files remain though they are gone (a pool process
    killed by a signal never says it ends); returns their pids."""
    gone: list[int] = []
    for name in glob.glob(os.path.join(glob.escape(path), "gauge_live*_*.db")):
        pid_text = os.path.basename(name)[: -len(".db")].rpartition("_")[2]
        pid = int(pid_text) if pid_text.isdigit() else 0
        if pid > 0 and pid not in gone and not _alive(pid):
            gone.append(pid)
            mark_dead(path, pid)
    return gone


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
