"""What the API's lifespan opens and every handler reads from the request's state."""

from __future__ import annotations

from typing import TypedDict, cast

from arq.connections import ArqRedis
from starlette.requests import HTTPConnection

from shared.settings import ApiSettings
from shared.store import Backend
from shared.tasks import TaskRepository


class AppState(TypedDict):
    settings: ApiSettings
    redis: ArqRedis
    backend: Backend
    tasks: TaskRepository


def app_state(conn: HTTPConnection) -> AppState:
    """The lifespan's state: the server copies it into every request's ASGI scope."""
    return cast(AppState, conn.scope["state"])
