"""Operator endpoints: retry, cancel, task lists (the failed list is the dead letters), queue."""

from __future__ import annotations

import base64
import binascii
import logging
from datetime import datetime

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from paperboy_api.errors import RETRY_AFTER, ApiError
from paperboy_api.state import app_state
from shared import queue
from shared.errors import FencedError
from shared.models import CallbackStatus, TaskStatus, stamp
from shared.presence import live_workers

log = logging.getLogger("paperboy.api")

MAX_PAGE = 200


async def retry_task(request: Request) -> Response:
    state = app_state(request)
    task_id = request.path_params["task_id"]
    task = await state["tasks"].reopen(task_id)
    if task is None:
        current = await state["tasks"].get(task_id)
        if current is not None and current.callback_status is CallbackStatus.PENDING:
            raise ApiError(409, "The callback of this outcome is still being delivered; retry then")
        raise _not_applicable(current, "retried", "failed or cancelled")
    try:
        await queue.enqueue_digest(state["redis"], task_id)
    except RedisError:
        # The task is pending in the store; the reconciler queues it once Redis answers.
        log.warning(
            "retry recorded, enqueue deferred to the reconciler", extra={"task_id": task_id}
        )
    log.info("task retried by an operator", extra={"task_id": task_id})
    return JSONResponse(task.status_view(), status_code=202)


async def cancel_task(request: Request) -> Response:
    state = app_state(request)
    task_id = request.path_params["task_id"]
    try:
        task = await state["tasks"].cancel(task_id)
    except FencedError as exc:
        raise ApiError(409, exc.message) from exc
    if task is None:
        raise _not_applicable(
            await state["tasks"].get(task_id), "cancelled", "pending or processing"
        )
    if task.status is TaskStatus.CANCELLED and task.callback_url:
        try:
            await queue.enqueue_callback(state["redis"], task_id)
        except RedisError:
            log.warning("callback enqueue deferred to the reconciler", extra={"task_id": task_id})
    log.info("task cancelled by an operator", extra={"task_id": task_id})
    return JSONResponse(task.status_view(), status_code=202)


def _not_applicable(task: object, verb: str, allowed: str) -> ApiError:
    if task is None:
        return ApiError(404, "Task not found")
    status = getattr(task, "status", None)
    return ApiError(409, f"Only {allowed} tasks can be {verb}; this one is {status}")


async def list_tasks(request: Request) -> Response:
    params = request.query_params
    status = _status_param(params.get("status"))
    if params.get("kind", "digest") != "digest":
        raise ApiError(
            422, [{"loc": ["query", "kind"], "msg": "kind must be digest", "type": "enum"}]
        )
    limit = _limit_param(params.get("limit", "50"))
    before = _decode_cursor(params.get("cursor"))
    items = await app_state(request)["tasks"].page(status, before, limit + 1)
    next_cursor = _encode_cursor(stamp(items[limit - 1].created_at)) if len(items) > limit else None
    return JSONResponse(
        {"items": [_summary(t.status_view()) for t in items[:limit]], "next_cursor": next_cursor}
    )


def _summary(view: dict[str, object]) -> dict[str, object]:
    # Lists carry everything but the digest HTML itself; fetch one task for that.
    return {**view, "result": None}


def _status_param(value: str | None) -> TaskStatus | None:
    if value in (None, ""):
        return None
    try:
        return TaskStatus(value)
    except ValueError as exc:
        allowed = ", ".join(s.value for s in TaskStatus)
        raise ApiError(
            422, [{"loc": ["query", "status"], "msg": f"must be one of {allowed}", "type": "enum"}]
        ) from exc


def _limit_param(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE:
        raise ApiError(
            422,
            [{"loc": ["query", "limit"], "msg": f"must be 1 to {MAX_PAGE}", "type": "int_range"}],
        )
    return int(value)


def _encode_cursor(created_at: str) -> str:
    return base64.urlsafe_b64encode(created_at.encode()).decode()


def _decode_cursor(value: str | None) -> str | None:
    if not value:
        return None
    try:
        created_at = base64.urlsafe_b64decode(value.encode()).decode()
        # A cursor is a timestamp we wrote; anything else (NUL bytes included) never reaches
        # the store.
        datetime.fromisoformat(created_at)
        return created_at
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ApiError(
            422, [{"loc": ["query", "cursor"], "msg": "invalid cursor", "type": "value_error"}]
        ) from exc


async def queue_state(request: Request) -> Response:
    state = app_state(request)
    try:
        summary = await queue.queue_summary(state["redis"])
        workers = await live_workers(state["redis"], state["settings"].lease_seconds)
    except RedisError as exc:
        raise ApiError(503, "Redis is unreachable", RETRY_AFTER) from exc
    return JSONResponse({**summary, "workers": workers})
