"""Fused execution: a pipeline's stages run one after another in ONE Celery task per batch.

A pipeline with ``execution: "fused"`` hands each batch off as one message to
``workers.stages.fused`` instead of a chain of one message per stage. The worker decodes the
batch once, each stage's output goes straight to the next stage in memory, and the ledger
sees one stage that both starts and finishes the batch. What each stage guarantees in a chain
holds here too, stage by stage:

- a stage's ``RecoverableError`` retries that stage, not the ones before it: the task is sent
  again with that stage's input and position (``at``) and the stage's own count of tries
  (``tries``); once the stage's ``max_retries`` are used up the task fails and the ledger
  hands the batch off again when it comes due, as for a chain;
- any other failure is retried ``failure_retries`` times, then the stage's batch is bisected
  and the items that fail alone are dead-lettered with that stage's name;
- each stage's dead letters are counted by the pipeline's dead-letter brake under its name,
  and a tripped brake holds the batch unfinished.

Stage bodies run with a request of their own (the fused task's id and headers, the stage's
tries). A body that calls ``self.retry()`` raises its error instead (as when called directly):
the retry belongs to the fused task, which the isolation boundary above decides.
Chained mode stays the default: it is what lets a pipeline route stages to different queues.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from celery import shared_task
from celery.exceptions import Ignore

from workers.pulling.tickets import HEADER, Position, read
from workers.runtime.logformat import log_context
from workers.stages.base import Attempt, Stage, _log_fields

NAME = "workers.stages.fused"


class Fused(Stage):
    """The task that runs a pipeline's stages on a batch (see the module)."""

    # Retries are counted per stage (``tries``) against that stage's ``max_retries``.
    max_retries = None
    # Per message: the dispatcher sends the sum of the stages' limits with each batch.
    soft_time_limit = None
    time_limit = None

    def __call__(self, items: Any, stages: list[str], at: int = 0, tries: int = 0) -> Any:
        where = read(getattr(self.request, HEADER, None))
        context = {} if where is None else _log_fields(where.ticket)
        with log_context(**context):
            first = where is not None and at == 0 and not self.request.retries
            if first and where is not None and not self._begin(where):
                raise Ignore()
            tasks = [self._stage(name) for name in stages]
            for i in range(at, len(tasks)):
                stage_tries = tries if i == at else 0
                items = self._run_stage(tasks[i], items, where, stages, i, stage_tries)
            if where is not None and where.last:
                self._finish(where)
            return items

    def _stage(self, name: str) -> Stage:
        task = self.app.tasks[name]  # NotRegistered (a KeyError) names it: the task fails
        if not isinstance(task, Stage):
            raise TypeError(f"{name!r} is not a workers.stages.Stage: it cannot run fused")
        return task

    def _run_stage(
        self,
        task: Stage,
        items: Any,
        where: Position | None,
        stages: list[str],
        index: int,
        tries: int,
    ) -> Any:
        again = partial(self._again, task, items, stages, index, tries)
        attempt = Attempt(tries, again, None if where is None else where.ticket)
        r = self.request
        task.push_request(
            id=r.id,
            headers=r.headers,
            delivery_info=r.delivery_info,
            hostname=r.hostname,
            retries=tries,
            called_directly=True,  # a body's own self.retry() raises (see the module)
        )
        try:
            return self._held_or_run(task, items, (), {}, where, attempt)
        finally:
            task.pop_request()

    def _again(
        self,
        task: Stage,
        items: Any,
        stages: list[str],
        index: int,
        tries: int,
        exc: BaseException,
    ) -> BaseException:
        """Send this task again from stage ``index`` with that stage's input, or, once the
        stage used up its retries, the error itself (the task fails; the ledger re-drives)."""
        if task.max_retries is not None and tries >= task.max_retries:
            return exc
        kwargs = {"stages": stages, "at": index, "tries": tries + 1}
        retry: BaseException = self.retry(
            args=(items,), kwargs=kwargs, exc=exc, countdown=task.backoff(tries)
        )
        return retry


@shared_task(name=NAME, base=Fused, bind=True)  # type: ignore[untyped-decorator]
def fused(self: Fused, items: Any, stages: list[str], at: int = 0, tries: int = 0) -> Any:
    """Never called: ``Fused.__call__`` runs the stages (see the module)."""
    raise NotImplementedError  # pragma: no cover
