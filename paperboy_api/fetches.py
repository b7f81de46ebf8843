"""`POST /fetch-sources` and `GET /fetch-status/{task_id}`: fetch a date's sources ahead."""

from __future__ import annotations

import logging

from pydantic import ValidationError
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from paperboy_api.body import read_json
from paperboy_api.digests import TASK_ID
from paperboy_api.errors import RETRY_AFTER, ApiError, field_errors
from paperboy_api.state import app_state
from shared import queue
from shared.errors import StoreError
from shared.fetches import FetchRequest, FetchTask
from shared.lifecycle import FETCH
from shared.tasks import Repository

log = logging.getLogger("paperboy.api")


async def fetch_sources(request: Request) -> Response:
    state = app_state(request)
    try:
        body = FetchRequest.model_validate(
            await read_json(request),
            context={"allow_private": state["settings"].callback_allow_private_networks},
        )
    except ValidationError as exc:
        raise ApiError(422, field_errors(exc)) from exc
    task = FetchTask(
        source_date=body.source_date, categories=body.categories, callback_url=body.callback_url
    )
    fetches = Repository(state["backend"], FETCH)
    try:
        await fetches.create(task)
        await queue.enqueue_task(state["redis"], FETCH, task.task_id)
    except (StoreError, RedisError) as exc:
        # Not accepted: take the row back (it may be written even if the insert failed), so the
        # reconciler does not run a fetch the client was told to send again.
        await fetches.take_back(task.task_id)
        raise ApiError(503, "Cannot record work right now; retry shortly", RETRY_AFTER) from exc
    return JSONResponse(
        {
            "task_id": task.task_id,
            "status": task.status.value,
            "message": "Fetch queued",
            "source_date": task.source_date,
            "status_url": f"/fetch-status/{task.task_id}",
        },
        status_code=202,
    )


async def fetch_status(request: Request) -> Response:
    task_id = request.path_params["task_id"]
    fetches = Repository(app_state(request)["backend"], FETCH)
    task = await fetches.get(task_id) if TASK_ID.fullmatch(task_id) else None
    if task is None:
        raise ApiError(404, "Fetch task not found")
    return JSONResponse(task.status_view())
