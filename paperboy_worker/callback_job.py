"""The `deliver_callback` job: one signed POST per attempt, retried on its own schedule.

The same job for every kind of task; `kind` names its declaration (shared/lifecycle.py).
"""

from __future__ import annotations

import logging
import time

from arq import Retry

from paperboy_worker.context import WorkerContext
from shared.callback import callback_body, deliver, delivery_headers
from shared.lifecycle import KINDS
from shared.models import CallbackStatus, TaskRecord, TaskStatus, utcnow
from shared.retry import backoff_delay
from shared.tasks import Repository

log = logging.getLogger("paperboy.callback")


def body_for(task: TaskRecord) -> bytes:
    completed = task.status is TaskStatus.COMPLETED
    return callback_body(
        task.task_id,
        task.status.value,
        task.result if completed else None,
        None if completed else task.error,
        task.finished_at or utcnow(),
    )


async def deliver_callback(ctx: WorkerContext, task_id: str, kind: str = "digest") -> str:
    settings = ctx["settings"]
    repository = Repository(ctx["backend"], KINDS[kind])
    task = await repository.get(task_id)
    if task is None or task.callback_status is not CallbackStatus.PENDING or not task.callback_url:
        return "nothing to deliver"
    assert task.delivery_id is not None
    body = body_for(task)
    secret = settings.callback_signing_secret
    headers = delivery_headers(
        task.delivery_id, body, secret.get_secret_value() if secret else None, int(time.time())
    )
    outcome = await deliver(
        ctx["callback_http"],
        task.callback_url,
        body,
        headers,
        allow_private=settings.callback_allow_private_networks,
        timeout=settings.callback_timeout_seconds,
    )
    ctx["metrics"].inc(
        "paperboy_callback_deliveries",
        outcome="delivered"
        if outcome.delivered
        else "retryable"
        if outcome.retryable
        else "refused",
    )
    attempts = task.callback_attempts + 1
    extra = {"task_id": task_id, "delivery_id": task.delivery_id, "attempts": attempts}
    if outcome.delivered:
        await repository.record_callback(task_id, CallbackStatus.DELIVERED, attempts, None)
        log.info("callback delivered", extra=extra)
        return "delivered"
    finished = task.finished_at or utcnow()
    window_left = settings.callback_retry_window_seconds - (utcnow() - finished).total_seconds()
    if outcome.retryable and window_left > 0:
        delay = backoff_delay(settings.callback_backoff_seconds, attempts, outcome.retry_after)
        await repository.record_callback(task_id, CallbackStatus.PENDING, attempts, outcome.error)
        log.warning("callback failed, retrying in %.0fs: %s", delay, outcome.error, extra=extra)
        raise Retry(defer=min(delay, max(window_left, 1)))
    await repository.record_callback(task_id, CallbackStatus.FAILED, attempts, outcome.error)
    log.error("callback given up: %s", outcome.error, extra=extra)
    return "failed"
