"""Digest endpoints: accept a request durably, report status, serve the HTML."""

from __future__ import annotations

import logging
import re
import uuid
from datetime import timedelta

from pydantic import ValidationError
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from paperboy_api.body import read_json
from paperboy_api.errors import ApiError, field_errors
from paperboy_api.state import AppState, app_state
from shared import queue
from shared.errors import StoreError
from shared.models import DigestRequest, DigestTask, TaskStatus
from shared.tasks import request_hash

log = logging.getLogger("paperboy.api")

TASK_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]([\x20-\x7e]{0,198}[\x21-\x7e])?$")
RETRY_AFTER = {"Retry-After": "5"}
# The digest is served on the dashboard's origin: even if it ever carried script, none runs.
DIGEST_HEADERS = {
    "Content-Security-Policy": "sandbox; default-src 'none'; style-src 'unsafe-inline'; "
    "img-src https: data:",
    "X-Content-Type-Options": "nosniff",
}


def status_url(task_id: str) -> str:
    return f"/digest-status/{task_id}"


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise ApiError(
            422,
            [
                {
                    "loc": ["header", "Idempotency-Key"],
                    "msg": "must be 1 to 200 printable ASCII characters",
                    "type": "value_error",
                }
            ],
        )
    return key


async def generate_digest(request: Request) -> Response:
    state = app_state(request)
    key = _idempotency_key(request)
    body = await read_json(request)
    try:
        digest = DigestRequest.model_validate(
            body, context={"allow_private": state["settings"].callback_allow_private_networks}
        )
    except ValidationError as exc:
        raise ApiError(422, field_errors(exc)) from exc
    task = DigestTask(
        task_id=str(uuid.uuid4()),
        request=digest.model_dump(mode="json"),
        callback_url=digest.callback_url,
        source_date=digest.effective_date().isoformat(),
        max_attempts=state["settings"].digest_max_tries,
    )
    try:
        return await _accept(state, task, key, request_hash(body) if key else "")
    except (StoreError, RedisError) as exc:
        log.warning("could not accept a digest: %s", exc, extra={"task_id": task.task_id})
        raise ApiError(503, "Cannot record work right now; retry shortly", RETRY_AFTER) from exc


async def _accept(state: AppState, task: DigestTask, key: str | None, body_hash: str) -> Response:
    """Record the task, bind the idempotency key, then queue it; 202 only once all three held."""
    tasks = state["tasks"]
    settings = state["settings"]
    await tasks.create(task)
    if key is not None:
        bound = await tasks.remember_key(
            key, body_hash, task.task_id, timedelta(seconds=settings.idempotency_ttl_seconds)
        )
        if not bound.created:
            await tasks.delete(task.task_id)
            if bound.conflict:
                raise ApiError(409, "Idempotency-Key was used with a different request body")
            return _accepted(bound.task_id, 200, "Same request seen before; same task")
    try:
        await queue.enqueue_digest(state["redis"], task.task_id)
    except RedisError:
        # Not queued means not accepted: take the row back so nothing claims otherwise.
        await tasks.delete(task.task_id)
        if key is not None:
            await tasks.forget_key(key, task.task_id)
        raise
    log.info("digest accepted", extra={"task_id": task.task_id})
    return _accepted(task.task_id, 202, "Digest queued")


def _accepted(task_id: str, code: int, message: str) -> Response:
    return JSONResponse(
        {
            "task_id": task_id,
            "status": TaskStatus.PENDING.value,
            "message": message,
            "status_url": status_url(task_id),
        },
        status_code=code,
    )


async def _task_or_404(request: Request) -> DigestTask:
    task_id = request.path_params["task_id"]
    task = await app_state(request)["tasks"].get(task_id) if TASK_ID.fullmatch(task_id) else None
    if task is None:
        raise ApiError(404, "Task not found")
    return task


async def digest_status(request: Request) -> Response:
    task = await _task_or_404(request)
    return JSONResponse(task.status_view())


async def digest_html(request: Request) -> Response:
    task = await _task_or_404(request)
    if task.status is not TaskStatus.COMPLETED or task.result is None:
        return JSONResponse(
            {"detail": "Digest is not completed", "status": task.status.value}, status_code=404
        )
    return HTMLResponse(task.result, headers=DIGEST_HEADERS)
