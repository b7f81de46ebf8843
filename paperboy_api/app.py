"""The Paperboy API: `uvicorn paperboy_api.app:app`. It accepts and reports; workers do the work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.routing import BaseRoute, Mount, Route

from paperboy_api import (
    admin,
    dashboard,
    digests,
    fetches,
    health,
    hooks,
    metrics,
    orchestration,
)
from paperboy_api.auth import ApiAuth
from paperboy_api.errors import http_error, store_unavailable
from paperboy_api.state import AppState
from shared import queue
from shared.errors import StoreError
from shared.logs import configure_logging
from shared.settings import ApiSettings, load_settings
from shared.store import open_backend
from shared.tasks import TaskRepository

ADMIN_ROUTES = [
    Route("/tasks", admin.list_tasks, methods=["GET"]),
    Route(
        "/tasks/{task_id}/retry",
        dashboard.browser_form(admin.retry_task, "retry"),
        methods=["POST"],
    ),
    Route(
        "/tasks/{task_id}/cancel",
        dashboard.browser_form(admin.cancel_task, "cancel"),
        methods=["POST"],
    ),
    Route("/queue", admin.queue_state, methods=["GET"]),
    Route("/orchestration/run", orchestration.run_daily, methods=["POST"]),
    Route("/orchestration/status/{source_date}", orchestration.daily_status),
    Route("/profiles", orchestration.upsert_profile, methods=["POST"]),
    Route("/profiles", orchestration.list_profiles, methods=["GET"]),
    Route("/profiles/{user_id}", orchestration.remove_profile, methods=["DELETE"]),
]

PROTECTED_ROUTES: list[BaseRoute] = [
    Route("/generate-digest", digests.generate_digest, methods=["POST"]),
    Route("/generate_digest", digests.generate_digest, methods=["POST"]),
    Route("/digest-status/{task_id}", digests.digest_status, methods=["GET"]),
    Route("/digest_status/{task_id}", digests.digest_status, methods=["GET"]),
    Route("/digests/{task_id}", digests.digest_html, methods=["GET"]),
    Route("/fetch-sources", fetches.fetch_sources, methods=["POST"]),
    Route("/fetch-status/{task_id}", fetches.fetch_status, methods=["GET"]),
    Route("/metrics", metrics.metrics, methods=["GET"]),
    Route("/hooks/welcome", hooks.welcome, methods=["POST"]),
    Mount("/admin", routes=ADMIN_ROUTES),
]

PUBLIC_ROUTES: list[BaseRoute] = [
    Route("/dashboard", dashboard.dashboard, methods=["GET"]),
    Route("/dashboard/login", dashboard.login, methods=["POST"]),
    Route("/dashboard/logout", dashboard.logout, methods=["POST"]),
    Route("/health", health.health, methods=["GET"]),
    Route("/ready", health.ready, methods=["GET"]),
]


def create_app(settings: ApiSettings) -> Starlette:
    """The ASGI app over the given settings (tests pass their own; uvicorn gets `app`)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[AppState]:
        configure_logging(settings)
        backend = await open_backend(settings)
        redis = queue.connect(settings)
        try:
            yield AppState(
                settings=settings, redis=redis, backend=backend, tasks=TaskRepository(backend)
            )
        finally:
            await redis.aclose()
            await backend.close()

    # Everything not public sits behind one authentication middleware, so no handler can
    # forget to check; a path that matches no route is refused before it can be told apart.
    protected = Mount(
        "",
        routes=PROTECTED_ROUTES,
        middleware=[
            Middleware(AuthenticationMiddleware, backend=ApiAuth(), on_error=dashboard.refused)
        ],
    )
    return Starlette(
        routes=[*PUBLIC_ROUTES, protected],
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, StoreError: store_unavailable},
    )


def __getattr__(name: str) -> Starlette:
    # `uvicorn paperboy_api.app:app` reads this attribute before it serves: the settings are
    # read then, so a missing or bad one stops the process with one line, while tests import
    # `create_app` without any environment.
    if name == "app":
        return create_app(load_settings(ApiSettings))
    raise AttributeError(name)
