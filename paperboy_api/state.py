"""What the API's lifespan opens and every handler reads from `request.state`."""

from __future__ import annotations

from typing import TypedDict, cast

from arq.connections import ArqRedis
from starlette.requests import Request

from shared.settings import Settings
from shared.store import Backend
from shared.tasks import TaskRepository


class AppState(TypedDict):
    settings: Settings
    redis: ArqRedis
    backend: Backend
    tasks: TaskRepository


def app_state(request: Request) -> AppState:
    return cast(AppState, request.state._state)
