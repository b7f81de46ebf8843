"""One attempt of any kind of task: claim it, hold its lease, run the kind's work, record the
outcome in one place, and notify once the task has ended.

The work function returns the columns of its result; it never writes success itself. Every
other way an attempt can end is an exception, and `Runner.record_outcome` maps each to the
store: a permanent error fails the task, a transient one (or a timeout) is retried on the kind's
policy by raising `Retry`, a wait that is nobody's fault costs no attempt, a cancel ends the
task cancelled, a lost claim writes nothing, and a shutdown gives the task back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic

from arq import Retry

from paperboy_worker import email_job
from paperboy_worker.context import WorkerContext
from shared import queue
from shared.errors import (
    FencedError,
    PaperboyError,
    PermanentError,
    TaskCancelledError,
    TransientError,
)
from shared.lifecycle import Notification, RetryPolicy, T, TaskKind
from shared.logs import bind_task, unbind_task
from shared.models import DigestTask, TaskRecord, TaskStatus
from shared.store import Row
from shared.tasks import Repository

log = logging.getLogger("paperboy.lifecycle")

# Deferrals that are nobody's failure: they cost the task no attempt.
WAITS = frozenset({"llm_rate_limited", "rate_limiter_unavailable"})
TOO_MANY_INTERRUPTIONS = "too_many_interruptions"

Work = Callable[[WorkerContext, T], Awaitable[Row]]
# How an attempt ended: the result's columns, or what stopped it.
Outcome = Row | PaperboyError | TimeoutError | asyncio.CancelledError
Notifier = Callable[[WorkerContext, TaskKind[Any], TaskRecord], Awaitable[None]]


async def _callback(ctx: WorkerContext, kind: TaskKind[Any], task: TaskRecord) -> None:
    """Queue the callback: its own job, retried on its own schedule (callback_job.py)."""
    if task.callback_url:
        await queue.enqueue_callback(ctx["redis"], task.task_id, kind=kind)


async def _email(ctx: WorkerContext, kind: TaskKind[Any], task: TaskRecord) -> None:
    """Move a daily digest's delivery on: its email is queued, or fails with the digest."""
    if isinstance(task, DigestTask):
        await email_job.notify_by_email(ctx, task)


NOTIFIERS: dict[Notification, Notifier] = {
    Notification.CALLBACK: _callback,
    Notification.EMAIL: _email,
}


async def run_task(ctx: WorkerContext, kind: TaskKind[T], task_id: str, work: Work[T]) -> str:
    """A kind's job: one attempt of the task; what became of it, for arq's log."""
    return await Runner(ctx, kind).run(task_id, work)


class Runner(Generic[T]):
    def __init__(self, ctx: WorkerContext, kind: TaskKind[T]) -> None:
        self.ctx = ctx
        self.kind = kind
        self.tasks = Repository(ctx["backend"], kind)
        self.policy: RetryPolicy = kind.policy(ctx["settings"])

    async def run(self, task_id: str, work: Work[T]) -> str:
        try:
            task = await self.tasks.claim(
                task_id,
                self.ctx["worker_id"],
                max_failures=self.policy.max_failures,
                max_interruptions=self.policy.max_interruptions,
            )
        except FencedError:
            return "claimed elsewhere"
        if task is None:
            return "nothing to do"
        context = bind_task(task_id, task.attempt)
        try:
            ended = await self._attempt(task, work)
        finally:
            unbind_task(context)
        if ended is None:
            return "fenced"
        await self.notify(ended)
        return ended.status.value

    async def _attempt(self, task: T, work: Work[T]) -> T | None:
        if task.interruptions > self.policy.max_interruptions:
            return await self.record_outcome(task, self._gave_up(task))
        log.info("%s attempt started", self.kind.name)
        score = self.ctx.get("score")  # when the job became runnable
        since = max(0.0, time.time() - score / 1000) if score else 0.0
        self._observe("paperboy_pickup_latency_seconds", since)
        heartbeat = self.ctx["heartbeat"]
        await heartbeat.acquire(task.task_id, task.attempt)
        started = time.monotonic()
        try:
            return await self.record_outcome(task, await self._work(task, work))
        finally:
            await heartbeat.release(task.task_id, task.attempt)
            self._observe(f"paperboy_{self.kind.name}_duration_seconds", time.monotonic() - started)

    async def _work(self, task: T, work: Work[T]) -> Outcome:
        try:
            async with asyncio.timeout(self.policy.timeout):
                return await work(self.ctx, task)
        except (PaperboyError, TimeoutError, asyncio.CancelledError) as stopped:
            return stopped

    def _gave_up(self, task: T) -> PermanentError:
        log.error(
            "task keeps getting interrupted; giving up",
            extra={"task_id": task.task_id, "attempt": task.attempt},
        )
        message = (
            f"The {self.kind.name} was interrupted {task.interruptions} times without finishing"
        )
        return PermanentError(message, code=TOO_MANY_INTERRUPTIONS)

    async def record_outcome(self, task: T, outcome: Outcome) -> T | None:
        """Write how the attempt ended: the task as it ended, None when this attempt lost its
        claim, or raise `Retry` (to try again) or `CancelledError` (the worker is stopping).
        Recording can itself find the task cancelled or claimed elsewhere."""
        try:
            return await self._record(task, outcome)
        except FencedError:
            log.warning("attempt lost its claim; stopping without writing")
            return None
        except TaskCancelledError as exc:
            log.info("attempt stopped: the task was cancelled")
            return await self.tasks.end_unowned(
                task.task_id, TaskStatus.CANCELLED, exc.message, exc.code
            )

    async def _record(self, task: T, outcome: Outcome) -> T:
        if isinstance(outcome, dict):
            try:
                return await self.tasks.complete(task, outcome)
            except TransientError as exc:  # the store: the work is checkpointed, try again
                outcome = exc
        if isinstance(outcome, asyncio.CancelledError):
            await asyncio.shield(self._release(task))
            raise outcome
        if isinstance(outcome, TimeoutError):
            message = f"Attempt timed out after {self.policy.timeout} seconds"
            return await self._transient(task, TransientError(message, code="timeout"))
        if isinstance(outcome, TransientError):
            return await self._transient(task, outcome)
        if isinstance(outcome, PermanentError):
            return await self._fail(task, outcome)
        raise outcome  # fenced, cancelled, or an error nobody modelled

    async def _fail(self, task: T, error: PermanentError) -> T:
        if error.code == TOO_MANY_INTERRUPTIONS:
            return await self.tasks.fail(task, error.message, error.code, own_failure=False)
        log.warning(
            "%s failed permanently: %s",
            self.kind.name,
            error.message,
            extra={"error_code": error.code},
        )
        return await self.tasks.fail(task, error.message, error.code)

    async def _transient(self, task: T, error: TransientError) -> T:
        code, message = error.code, error.message
        extra = {"task_id": task.task_id, "attempt": task.attempt, "error_code": code}
        if code in WAITS:
            delay = self.policy.delay(1, error.retry_after)
            await self.tasks.retry_later(task, message, code, delay, failure=False)
            log.info("waiting for the provider's rate limit: %.1fs", delay, extra=extra)
            raise Retry(defer=delay)
        failures = task.failures + 1
        if failures >= self.policy.max_failures:
            log.error("last try failed: %s", message, extra=extra)
            return await self.tasks.fail(task, f"{message} (after {failures} tries)", code)
        delay = self.policy.delay(failures, error.retry_after)
        await self.tasks.retry_later(task, message, code, delay)
        self._count(f"paperboy_{self.kind.name}_retries", error_code=code)
        log.warning("attempt failed, retrying in %.1fs: %s", delay, message, extra=extra)
        raise Retry(defer=delay)

    async def _release(self, task: T) -> None:
        log.warning("attempt interrupted by shutdown; releasing it")
        self._count(f"paperboy_{self.kind.name}_interruptions")
        try:
            await self.tasks.release(task)
        except (FencedError, TaskCancelledError, TransientError):
            log.warning("could not record the release", extra={"task_id": task.task_id})

    async def notify(self, task: T) -> None:
        """After a terminal status: log and count it, then the kind's notification."""
        log.info(
            "%s finished",
            self.kind.name,
            extra={
                "task_id": task.task_id,
                "attempt": task.attempt,
                "status": task.status.value,
                **task.log_fields(),
            },
        )
        self._count(f"paperboy_{self.kind.name}s_finished", status=task.status.value)
        if task.status is TaskStatus.FAILED:
            error_code = task.error_code or "unknown"
            self._count(f"paperboy_{self.kind.name}_failures", error_code=error_code)
        for notification in self.kind.notifications:
            await NOTIFIERS[notification](self.ctx, self.kind, task)

    def _count(self, name: str, **labels: str) -> None:
        if self.kind.measured:
            self.ctx["metrics"].inc(name, 1, **labels)

    def _observe(self, name: str, value: float) -> None:
        if self.kind.measured:
            self.ctx["metrics"].observe(name, value)
