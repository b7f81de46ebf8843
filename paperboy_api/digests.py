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
from paperboy_api.errors import RETRY_AFTER, ApiError, field_errors
from paperboy_api.state import AppState, app_state
from shared import queue
from shared.errors import StoreError
from shared.models import DigestRequest, DigestTask, TaskStatus
from shared.tasks import request_hash

log = logging.getLogger("paperboy.api")

TASK_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]([\x20-\x7e]{0,198}[\x21-\x7e])?$")
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
    if key is None:
        return await _accept_new(state, task)
    return await _accept_keyed(state, task, key, request_hash(body))


async def _accept_new(state: AppState, task: DigestTask) -> Response:
    """Without a key nobody else knows the task id, so any failure takes the row back: the
    client is told 503 and no task is left to run behind its back."""
    tasks = state["tasks"]
    try:
        await tasks.create(task)
        await queue.enqueue_digest(state["redis"], task.task_id)
    except (StoreError, RedisError) as exc:
        # The insert may have been written even though it failed (an answer lost on the way).
        await tasks.take_back(task.task_id)
        raise _cannot_accept(task.task_id, exc) from exc
    log.info("digest accepted", extra={"task_id": task.task_id})
    return _accepted(task.task_id, 202, "Digest queued")


async def _accept_keyed(state: AppState, task: DigestTask, key: str, body_hash: str) -> Response:
    """Bind the key first: the binding picks the task id, and storing and queueing that id are
    both idempotent. Whatever step fails, a retry with the same key finishes the same task, and
    concurrent requests with one key all name it: one task or none."""
    tasks = state["tasks"]
    ttl = timedelta(seconds=state["settings"].idempotency_ttl_seconds)
    try:
        bound = await tasks.remember_key(key, body_hash, task.task_id, ttl)
        if bound.conflict:
            raise ApiError(409, "Idempotency-Key was used with a different request body")
        task = task.model_copy(update={"task_id": bound.task_id})
        created = await tasks.create(task)
        # Queueing again is harmless (a known job id is refused) and heals an earlier request
        # with this key that stored the task but could not queue it.
        await queue.enqueue_digest(state["redis"], task.task_id)
    except (StoreError, RedisError) as exc:
        raise _cannot_accept(task.task_id, exc) from exc
    if created:
        log.info("digest accepted", extra={"task_id": task.task_id})
        return _accepted(task.task_id, 202, "Digest queued")
    return _accepted(task.task_id, 200, "Same request seen before; same task")


def _cannot_accept(task_id: str, exc: StoreError | RedisError) -> ApiError:
    log.warning("could not accept a digest: %s", exc, extra={"task_id": task_id})
    return ApiError(503, "Cannot record work right now; retry shortly", RETRY_AFTER)


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
