"""The periodic sweeps: reap lapsed leases, and reconcile the store with Redis.

The store is the source of truth; Redis may lose everything. The reconciler puts back whatever
the store says should be in flight: an active task with no live job and no live lease is queued
again, and a terminal task whose callback is undelivered gets its delivery job again.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from arq.jobs import JobStatus

from paperboy_worker import lease
from paperboy_worker.context import WorkerContext
from shared import keys, queue
from shared.models import utcnow

log = logging.getLogger("paperboy.reconcile")

LIVE = {JobStatus.queued, JobStatus.deferred, JobStatus.in_progress}


async def reap_leases(ctx: WorkerContext) -> int:
    reaped = len(await lease.reap(ctx["redis"], ctx["tasks"]))
    if reaped:
        await ctx["metrics"].inc("paperboy_leases_reaped", reaped)
    return reaped


async def reconcile(ctx: WorkerContext) -> dict[str, int]:
    redis = ctx["redis"]
    requeued = redelivered = 0
    cutoff = utcnow() - timedelta(seconds=ctx["settings"].reconcile_grace_seconds)
    for task in await ctx["tasks"].active():
        if task.created_at > cutoff or await redis.exists(keys.lease_key(task.task_id)):
            continue
        if await queue.job_status(redis, keys.digest_job_id(task.task_id)) in LIVE:
            continue
        if await queue.enqueue_digest(redis, task.task_id):
            requeued += 1
            log.warning("task had no live job; queued again", extra={"task_id": task.task_id})
    for task in await ctx["tasks"].undelivered():
        if await queue.job_status(redis, keys.callback_job_id(task.task_id)) in LIVE:
            continue
        if await queue.enqueue_callback(redis, task.task_id):
            redelivered += 1
            log.warning("callback had no live job; queued again", extra={"task_id": task.task_id})
    if requeued:
        await ctx["metrics"].inc("paperboy_tasks_requeued", requeued, kind="digest")
    if redelivered:
        await ctx["metrics"].inc("paperboy_tasks_requeued", redelivered, kind="callback")
    return {"requeued": requeued, "redelivered": redelivered}
