"""The stage contract: every task in a pipeline's chain runs on ``Stage``.

A stage takes a list of JSON items and returns a list. Around the task's body the base class
adds: retries of ``RecoverableError`` (declared, bounded, with backoff); isolation of any other
failure (retried ``failure_retries`` times, then the batch is bisected down to the items that
fail alone, which are dead-lettered with the stage and the exception while the rest go on);
and the ledger's bookkeeping: the first stage counts a start, the last one finishes the batch.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from celery import Task, shared_task
from celery.exceptions import Ignore, Reject, Retry, SoftTimeLimitExceeded
from celery.utils.time import get_exponential_backoff_interval

from workers.config.masking import mask_text, secrets_in
from workers.connections import connections_for
from workers.exceptions import BrakeTripped, RecoverableError
from workers.kafka.deadletter import short_reason
from workers.metrics import record
from workers.pulling.tickets import HEADER, Position, Ticket, read
from workers.runtime.logformat import log_context, slices_context
from workers.stages.braking import stage_run
from workers.stages.letters import dead_letter
from workers.state.brake import Brake, Limits
from workers.state.brake_redis import RedisBrake
from workers.state.ledger_redis import RedisLedger

logger = logging.getLogger(__name__)

# Control flow of Celery and time limits go through untouched: they are not item failures;
# neither is the dead-letter brake refusing the letters of a run (its batch is held).
_THROUGH = (Retry, Ignore, Reject, SoftTimeLimitExceeded, BrakeTripped)


def failure_reason(stage: str, exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """Why a stage dead-lettered an item: the stage, the exception type and its message, with
    URL passwords and ``secrets`` masked (a library's error may quote a password)."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - an exception whose __str__ fails still has a type
        text = "<unprintable>"
    return short_reason(mask_text(f"stage {stage} failed: {type(exc).__name__}: {text}", secrets))


class Stage(Task):  # type: ignore[misc]
    """Base class of pipeline stages (``@stage(name=...)`` or ``base=Stage``).

    Time limits bound one run of the body; the ledger derives from them when a batch that
    has not finished is handed off again (see the pipeline's ``redrive_seconds``).
    """

    autoretry_for = (RecoverableError,)
    retry_backoff = 2
    retry_backoff_max = 60
    retry_jitter = True
    max_retries: int | None = 8
    acks_late = True
    reject_on_worker_lost = True
    soft_time_limit: float | None = 100
    time_limit: float | None = 120
    #: Unexpected exceptions of a whole batch are retried this often before bisecting it.
    failure_retries = 2

    def __call__(self, items: Any, *args: Any, **kwargs: Any) -> Any:
        where = read(getattr(self.request, HEADER, None))
        context = {} if where is None else _log_fields(where.ticket)
        with log_context(**context):
            first = where is not None and where.first and not self.request.retries
            if first and where is not None and not self._begin(where):
                raise Ignore()  # and the rest of the chain with it: it must not finish
            ticket = None if where is None else where.ticket
            attempt = Attempt(
                self.request.retries, self._retry_later, ticket, bool(self.request.called_directly)
            )
            result = self._held_or_run(self, items, args, kwargs, where, attempt)
            if where is not None and where.last:
                self._finish(where)
            return result

    def _held_or_run(
        self,
        stage: Stage,
        items: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        where: Position | None,
        attempt: Attempt,
    ) -> Any:
        """``stage``'s body on ``items`` in its isolation boundary, counted by the batch's
        dead-letter brake; when the brake refuses its letters, the batch is held
        (``Ignore``: unfinished, nothing moves past it)."""
        ticket = attempt.ticket
        try:
            with stage_run(stage.name, ticket, items, partial(self._brake, ticket)):
                return stage._isolated(items, args, kwargs, attempt)
        except BrakeTripped as tripped:
            self._hold(where, tripped)
            raise Ignore() from None

    # -- the ledger ------------------------------------------------------------------------

    def _ledger(self) -> RedisLedger:
        connections = connections_for(self.app)
        return RedisLedger(connections.redis(), connections.settings.redis.offset_ttl_seconds)

    def _begin(self, where: Position) -> bool:
        """Count a start; False when the batch should not run: it finished or was reset
        already (a message delivered again), or it started too often (its owner splits it
        and dead-letters what fails alone; the later stages must not finish it)."""
        ticket = where.ticket
        try:
            starts = self._ledger().begin(
                ticket.space, ticket.slices, ticket.budget_ms, ticket.max_starts
            )
        except RecoverableError as exc:
            raise self._retry_later(exc) from exc
        live = [n for n in starts if n is not None]
        if not live:
            logger.info("%s: batch %s was finished or reset already; skipped", self.name, ticket)
            return False
        if max(live) > ticket.max_starts:
            logger.error(
                "%s: batch %s started %d times without finishing (its worker died each "
                "time); not run again: its owner splits it and dead-letters what fails alone",
                self.name, ticket, max(live),
            )  # fmt: skip
            return False
        return True

    def _finish(self, where: Position) -> None:
        started = time.perf_counter()
        try:
            self._ledger().finish(where.ticket.space, where.ticket.slices)
        except RecoverableError as exc:  # run again: stages are idempotent
            raise self._retry_later(exc) from exc
        oldest = getattr(self.request, record.OLDEST_HEADER, None)  # see CeleryDispatcher
        record.finished(where.ticket.pipeline, time.perf_counter() - started, oldest)

    def _brake(self, ticket: Ticket | None) -> tuple[Brake, Limits] | None:
        """The dead-letter brake of the batch's pipeline and its limits; None: it has none."""
        connections = connections_for(self.app)
        pipeline = None if ticket is None else connections.settings.pipelines.get(ticket.pipeline)
        limits = None if pipeline is None else Limits.of(pipeline)
        return None if limits is None else (RedisBrake(connections.redis()), limits)

    def _hold(self, where: Position | None, tripped: BrakeTripped) -> None:
        """The dead-letter brake holds this batch: it stays in the ledger unfinished, due at
        once and without the start it took (the brake, not the batch, stopped it), and its
        owner hands it off again once the brake is resumed."""
        if where is None:
            return
        try:
            self._ledger().expedite(where.ticket.space, where.ticket.slices, unstart=True)
        except RecoverableError as exc:  # then it is handed off again when due
            logger.warning("%s: cannot make held batch %s due: %s", self.name, where.ticket, exc)
        logger.warning(
            "%s: batch %s held by the dead-letter brake of pipeline %s (not dead-lettered, "
            "not finished); it is handed off again once the brake is resumed",
            self.name, where.ticket, tripped.pipeline,
        )  # fmt: skip

    def _secrets(self) -> set[str]:
        return secrets_in(self.app.conf, os.environ)

    def _retry_later(self, exc: BaseException) -> BaseException:
        result: BaseException = self.retry(exc=exc, countdown=self.backoff(self.request.retries))
        return result

    def backoff(self, retries: int) -> float:
        """Seconds before try ``retries + 1`` of this stage (exponential, capped, jittered)."""
        countdown: float = get_exponential_backoff_interval(
            factor=self.retry_backoff,
            retries=retries,
            maximum=self.retry_backoff_max,
            full_jitter=self.retry_jitter,
        )
        return countdown

    # -- isolation -------------------------------------------------------------------------

    def _isolated(
        self, items: Any, args: tuple[Any, ...], kwargs: dict[str, Any], attempt: Attempt
    ) -> Any:
        """The body on ``items``, inside the isolation boundary: recoverable errors retry
        (``attempt.retry``), other failures retry ``failure_retries`` times, then bisect."""
        try:
            return self.run(items, *args, **kwargs)
        except _THROUGH:
            raise
        except RecoverableError as exc:
            raise attempt.retry(exc) from exc
        except Exception as exc:
            if attempt.direct or not isinstance(items, list) or not items:
                raise
            if attempt.retries < self.failure_retries:
                logger.warning(
                    "%s: a batch of %d items failed (%s); retrying it before isolating",
                    self.name, len(items), failure_reason(self.name, exc, self._secrets()),
                )  # fmt: skip
                raise attempt.retry(exc) from exc
            return self._bisect(items, args, kwargs, attempt)

    def _bisect(
        self, items: list[Any], args: tuple[Any, ...], kwargs: dict[str, Any], attempt: Attempt
    ) -> Any:
        """Run the body on halves of the batch, down to single items; dead-letter the items
        that fail alone and return the outputs of the rest, in order."""
        kept: list[Any] = []
        refused: list[tuple[dict[str, Any], str]] = []

        def attempt_on(part: list[Any]) -> None:
            try:
                out = self.run(part, *args, **kwargs)
                if not isinstance(out, list):
                    raise TypeError(f"a stage returns a list, not {type(out).__name__}")
                kept.extend(out)
            except _THROUGH:
                raise
            except RecoverableError as exc:
                raise attempt.retry(exc) from exc
            except Exception as exc:  # noqa: BLE001 - the isolation boundary: it is the point
                if len(part) == 1:
                    refused.append((part[0], failure_reason(self.name, exc, self._secrets())))
                    return
                attempt_on(part[: len(part) // 2])
                attempt_on(part[len(part) // 2 :])

        if len(items) == 1:
            attempt_on(items)
        else:
            attempt_on(items[: len(items) // 2])
            attempt_on(items[len(items) // 2 :])
        if refused:
            try:
                dead_letter(self.app, refused, stage=self.name, ticket=attempt.ticket)
            except RecoverableError as exc:
                raise attempt.retry(exc) from exc
            logger.error(
                "%s: %d of %d items failed alone and were dead-lettered (first: %s); the other "
                "%d went on",
                self.name, len(refused), len(items), refused[0][1], len(items) - len(refused),
            )  # fmt: skip
        return kept


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of a stage's body on a batch: how many tries came before (``retries``), how to
    try again later (``retry(exc)`` returns the exception to raise: Celery's ``Retry``, or the
    error itself once retries are used up), the batch's ticket, and whether the body was
    called directly (outside a worker: failures are raised, not isolated)."""

    retries: int
    retry: Callable[[BaseException], BaseException]
    ticket: Ticket | None
    direct: bool = False


def _log_fields(ticket: Ticket) -> dict[str, Any]:
    return {
        "pipeline": ticket.pipeline,
        "topic": ticket.space.topic,
        **slices_context(ticket.slices),
    }


def stage(*, name: str, **options: Any) -> Callable[[Callable[..., Any]], Any]:
    """Declare a pipeline stage: a shared Celery task on ``Stage`` under a stable ``name``.
    Options are Celery task options (``bind``, ``time_limit``, ``queue``, ...)."""
    return shared_task(name=name, base=Stage, **options)  # type: ignore[no-any-return]
