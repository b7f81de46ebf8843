"""The `generate_digest` job: claim an attempt, run it under a lease, record how it ended."""

from __future__ import annotations

import asyncio
import logging
import time

from arq import Retry

from paperboy_worker import email_job
from paperboy_worker.context import WorkerContext
from paperboy_worker.pipeline.run import Attempt
from shared import queue
from shared.errors import FencedError, PermanentError, TaskCancelledError, TransientError
from shared.logs import bind_task, unbind_task
from shared.models import DigestTask, TaskStatus
from shared.retry import backoff_delay

log = logging.getLogger("paperboy.digest")

# Deferrals that are nobody's failure: they cost the task no attempt.
WAITS = frozenset({"llm_rate_limited", "rate_limiter_unavailable"})


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
    await email_job.digest_started(ctx, task)
    extra = {"task_id": task_id, "attempt": task.attempt}
    if task.interruptions > settings.digest_max_interruptions:
        log.error("task keeps getting interrupted; giving up", extra=extra)
        message = f"The digest was interrupted {task.interruptions} times without finishing"
        gave_up = await ctx["tasks"].fail(
            task, message, "too_many_interruptions", own_failure=False
        )
        await finished(ctx, gave_up)
        return gave_up.status.value
    context = bind_task(task_id, task.attempt)
    try:
        return await _run_attempt(ctx, task)
    finally:
        unbind_task(context)


async def _run_attempt(ctx: WorkerContext, task: DigestTask) -> str:
    task_id = task.task_id
    log.info("digest attempt started")
    metrics = ctx["metrics"]
    metrics.observe("paperboy_pickup_latency_seconds", _since_runnable(ctx))
    await ctx["heartbeat"].acquire(task_id, task.attempt)
    started = time.monotonic()
    try:
        ended = await _attempt(ctx, task)
    finally:
        await ctx["heartbeat"].release(task_id, task.attempt)
        metrics.observe("paperboy_digest_duration_seconds", time.monotonic() - started)
    if ended is not None:
        await finished(ctx, ended)
        return ended.status.value
    return "fenced"


async def _attempt(ctx: WorkerContext, task: DigestTask) -> DigestTask | None:
    """Run the pipeline and record how it ended: the terminal task, None when fenced, or raise
    `Retry`. Recording an outcome can itself find the task cancelled or claimed elsewhere."""
    try:
        return await _outcome(ctx, task)
    except FencedError:
        log.warning("attempt lost its claim; stopping without writing")
        return None
    except TaskCancelledError as exc:
        log.info("attempt stopped: the task was cancelled")
        return await ctx["tasks"].end_unowned(
            task.task_id, TaskStatus.CANCELLED, exc.message, exc.code
        )


async def _outcome(ctx: WorkerContext, task: DigestTask) -> DigestTask:
    settings = ctx["settings"]
    try:
        async with asyncio.timeout(settings.digest_task_timeout):
            return await Attempt(ctx, task, ctx["writer"]).run()
    except PermanentError as exc:
        log.warning("digest failed permanently: %s", exc.message, extra={"error_code": exc.code})
        return await ctx["tasks"].fail(task, exc.message, exc.code)
    except TransientError as exc:
        return await _transient(ctx, task, exc.message, exc.code, exc.retry_after)
    except TimeoutError:
        message = f"Attempt timed out after {settings.digest_task_timeout} seconds"
        return await _transient(ctx, task, message, "timeout", None)
    except asyncio.CancelledError:
        log.warning("attempt interrupted by shutdown; releasing it")
        ctx["metrics"].inc("paperboy_digest_interruptions")
        await asyncio.shield(_release(ctx, task))
        raise


async def _transient(
    ctx: WorkerContext, task: DigestTask, message: str, code: str, retry_after: float | None
) -> DigestTask:
    settings = ctx["settings"]
    extra = {"task_id": task.task_id, "attempt": task.attempt, "error_code": code}
    if code in WAITS:
        delay = backoff_delay(settings.retry_backoff_seconds, 1, retry_after)
        await ctx["tasks"].retry_later(task, message, code, delay, failure=False)
        log.info("waiting for the provider's rate limit: %.1fs", delay, extra=extra)
        raise Retry(defer=delay)
    if task.failures + 1 >= settings.digest_max_tries:
        log.error("last try failed: %s", message, extra=extra)
        return await ctx["tasks"].fail(task, f"{message} (after {task.failures + 1} tries)", code)
    delay = backoff_delay(settings.retry_backoff_seconds, task.failures + 1, retry_after)
    await ctx["tasks"].retry_later(task, message, code, delay)
    ctx["metrics"].inc("paperboy_digest_retries", error_code=code)
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
        extra={
            "task_id": task.task_id,
            "attempt": task.attempt,
            "status": task.status.value,
            "prompt_tokens": task.usage.prompt_tokens,
            "completion_tokens": task.usage.completion_tokens,
            "cost_usd": task.usage.cost_usd,
        },
    )
    ctx["metrics"].inc("paperboy_digests_finished", status=task.status.value)
    if task.status is TaskStatus.FAILED:
        ctx["metrics"].inc("paperboy_digest_failures", error_code=task.error_code or "unknown")
    if task.callback_url:
        await queue.enqueue_callback(ctx["redis"], task.task_id)
    await email_job.notify_by_email(ctx, task)


def _since_runnable(ctx: WorkerContext) -> float:
    """Seconds from when the job became runnable (its queue score) to now."""
    score = ctx.get("score")
    return max(0.0, time.time() - score / 1000) if score else 0.0
