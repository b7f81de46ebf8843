"""The `generate_digest` job: claim an attempt, run it under a lease, record how it ended."""

from __future__ import annotations

import asyncio
import logging

from arq import Retry

from paperboy_worker.context import WorkerContext
from paperboy_worker.pipeline.run import Attempt
from paperboy_worker.pipeline.writer import OfflineWriter
from shared import queue
from shared.errors import FencedError, PermanentError, TaskCancelledError, TransientError
from shared.models import DigestTask, TaskStatus
from shared.retry import backoff_delay

log = logging.getLogger("paperboy.digest")


async def generate_digest(ctx: WorkerContext, task_id: str) -> str:
    settings = ctx["settings"]
    try:
        task = await ctx["tasks"].claim(
            task_id,
            ctx["worker_id"],
            max_failures=settings.digest_max_tries,
            max_interruptions=settings.digest_max_interruptions,
        )
    except FencedError:
        return "claimed elsewhere"
    if task is None:
        return "nothing to do"
    extra = {"task_id": task_id, "attempt": task.attempt}
    if task.interruptions > settings.digest_max_interruptions:
        log.error("task keeps getting interrupted; giving up", extra=extra)
        message = f"The digest was interrupted {task.interruptions} times without finishing"
        gave_up = await ctx["tasks"].fail(
            task, message, "too_many_interruptions", own_failure=False
        )
        await finished(ctx, gave_up)
        return gave_up.status.value
    log.info("digest attempt started", extra=extra)
    await ctx["heartbeat"].acquire(task_id, task.attempt)
    try:
        ended = await _attempt(ctx, task)
    finally:
        await ctx["heartbeat"].release(task_id)
    if ended is not None:
        await finished(ctx, ended)
        return ended.status.value
    return "fenced"


async def _attempt(ctx: WorkerContext, task: DigestTask) -> DigestTask | None:
    """Run the pipeline; the terminal task, None when fenced, or raise `Retry`."""
    settings = ctx["settings"]
    tasks = ctx["tasks"]
    extra = {"task_id": task.task_id, "attempt": task.attempt}
    try:
        async with asyncio.timeout(settings.digest_task_timeout):
            return await Attempt(ctx, task, OfflineWriter()).run()
    except FencedError:
        log.warning("attempt lost its claim; stopping without writing", extra=extra)
        return None
    except TaskCancelledError as exc:
        return await tasks.end_unowned(task.task_id, TaskStatus.CANCELLED, exc.message, exc.code)
    except PermanentError as exc:
        log.warning("digest failed permanently: %s", exc.message, extra=extra)
        return await tasks.fail(task, exc.message, exc.code)
    except TransientError as exc:
        return await _transient(ctx, task, exc.message, exc.code, exc.retry_after)
    except TimeoutError:
        message = f"Attempt timed out after {settings.digest_task_timeout} seconds"
        return await _transient(ctx, task, message, "timeout", None)
    except asyncio.CancelledError:
        log.warning("attempt interrupted by shutdown; releasing it", extra=extra)
        await asyncio.shield(_release(ctx, task))
        raise


async def _transient(
    ctx: WorkerContext, task: DigestTask, message: str, code: str, retry_after: float | None
) -> DigestTask:
    settings = ctx["settings"]
    extra = {"task_id": task.task_id, "attempt": task.attempt, "error_code": code}
    if task.failures + 1 >= settings.digest_max_tries:
        log.error("last try failed: %s", message, extra=extra)
        return await ctx["tasks"].fail(task, f"{message} (after {task.failures + 1} tries)", code)
    delay = backoff_delay(settings.retry_backoff_seconds, task.failures + 1, retry_after)
    await ctx["tasks"].retry_later(task, message, code, delay)
    log.warning("attempt failed, retrying in %.1fs: %s", delay, message, extra=extra)
    raise Retry(defer=delay)


async def _release(ctx: WorkerContext, task: DigestTask) -> None:
    try:
        await ctx["tasks"].release(task)
    except (FencedError, TaskCancelledError, TransientError):
        log.warning("could not record the release", extra={"task_id": task.task_id})


async def finished(ctx: WorkerContext, task: DigestTask) -> None:
    """After a terminal status: queue the callback (its own job, retried on its own)."""
    log.info(
        "digest finished",
        extra={"task_id": task.task_id, "attempt": task.attempt, "status": task.status.value},
    )
    if task.callback_url:
        await queue.enqueue_callback(ctx["redis"], task.task_id)
