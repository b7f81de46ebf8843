"""The periodic sweeps: reap lapsed leases, and reconcile the store with Redis.

The store is the source of truth; Redis may lose everything. The reconciler puts back whatever
the store says should be in flight: an active task with no live job and no live lease is queued
again, and a terminal task whose callback is undelivered gets its delivery job again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from arq.jobs import JobStatus

from paperboy_worker import email_job, lease
from paperboy_worker.context import WorkerContext
from paperboy_worker.sweeps import Periodic, once_per_interval
from shared import keys, queue
from shared.lifecycle import KINDS, TaskKind
from shared.models import TaskRecord, utcnow
from shared.tasks import Repository

log = logging.getLogger("paperboy.reconcile")

LIVE = {JobStatus.queued, JobStatus.deferred, JobStatus.in_progress}
SWEEP_TIMEOUT = 60
RECONCILE_LOCK = keys.PREFIX + "reconcile-lock"


def start_sweeps(ctx: WorkerContext) -> list[Periodic]:
    """Start this worker's reaper (every worker reaps: concurrent reaps are harmless) and its
    share of the reconciler (one worker per interval, by lock)."""
    settings = ctx["settings"]
    reconciler = once_per_interval(
        ctx["redis"],
        RECONCILE_LOCK,
        ctx["worker_id"],
        settings.reconcile_interval_seconds,
        lambda: reconcile(ctx),
    )
    sweeps = [
        Periodic(
            "reaper",
            settings.reaper_interval_seconds,
            lambda: reap_leases(ctx),
            timeout=SWEEP_TIMEOUT,
        ),
        Periodic(
            "reconciler", settings.reconcile_interval_seconds, reconciler, timeout=SWEEP_TIMEOUT
        ),
    ]
    for sweep in sweeps:
        sweep.start()
    return sweeps


async def reap_leases(ctx: WorkerContext) -> int:
    settings = ctx["settings"]
    lease_ms = int(settings.lease_seconds * 1000)
    grace_ms = lease.sighting_grace_ms(settings)
    reaped = len(await lease.reap(ctx["redis"], ctx["tasks"], lease_ms=lease_ms, grace_ms=grace_ms))
    if reaped:
        ctx["metrics"].inc("paperboy_leases_reaped", reaped)
    return reaped


async def reconcile(ctx: WorkerContext) -> dict[str, int]:
    counts = {"requeued": 0, "redelivered": 0}
    for kind in KINDS.values():
        tasks = Repository(ctx["backend"], kind)
        counts["requeued"] += await _requeue(ctx, kind, await tasks.active())
        counts["redelivered"] += await _redeliver(ctx, kind, await tasks.undelivered())
    counts["emails"] = await email_job.reconcile_deliveries(ctx)
    for what in ("requeued", "redelivered"):
        if counts[what]:
            ctx["metrics"].inc("paperboy_tasks_requeued", counts[what], kind=what)
    return counts


async def _requeue(ctx: WorkerContext, kind: TaskKind[Any], tasks: Sequence[TaskRecord]) -> int:
    redis = ctx["redis"]
    requeued = 0
    cutoff = utcnow() - timedelta(seconds=ctx["settings"].reconcile_grace_seconds)
    for task in tasks:
        if task.created_at > cutoff or await redis.exists(keys.lease_key(task.task_id)):
            continue
        if await queue.job_status(redis, kind.job_id(task.task_id)) in LIVE:
            continue
        if await queue.enqueue_task(redis, kind, task.task_id):
            requeued += 1
            log.warning("task had no live job; queued again", extra={"task_id": task.task_id})
    return requeued


async def _redeliver(ctx: WorkerContext, kind: TaskKind[Any], tasks: Sequence[TaskRecord]) -> int:
    redelivered = 0
    for task in tasks:
        if await queue.job_status(ctx["redis"], kind.callback_job_id(task.task_id)) in LIVE:
            continue
        if await queue.enqueue_callback(ctx["redis"], task.task_id, kind=kind):
            redelivered += 1
            log.warning("callback had no live job; queued again", extra={"task_id": task.task_id})
    return redelivered
