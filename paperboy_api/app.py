"""The Paperboy API: `uvicorn paperboy_api.app:app`. It accepts and reports; workers do the work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Route

from paperboy_api import admin, dashboard, digests, fetches, health, metrics, orchestration
from paperboy_api.errors import http_error, store_unavailable
from paperboy_api.state import AppState
from shared import queue
from shared.errors import StoreError
from shared.logs import configure_logging
from shared.settings import Settings, load_settings
from shared.store import open_backend
from shared.tasks import TaskRepository


def create_app(settings: Settings | None = None) -> Starlette:
    """The ASGI app; settings are read at startup unless given (tests pass their own)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[AppState]:
        config = settings or load_settings()
        configure_logging(config)
        backend = await open_backend(config)
        redis = queue.connect(config)
        try:
            yield AppState(
                settings=config, redis=redis, backend=backend, tasks=TaskRepository(backend)
            )
        finally:
            await redis.aclose()
            await backend.close()

    routes = [
        Route("/generate-digest", digests.generate_digest, methods=["POST"]),
        Route("/generate_digest", digests.generate_digest, methods=["POST"]),
        Route("/digest-status/{task_id}", digests.digest_status, methods=["GET"]),
        Route("/digest_status/{task_id}", digests.digest_status, methods=["GET"]),
        Route("/digests/{task_id}", digests.digest_html, methods=["GET"]),
        Route("/fetch-sources", fetches.fetch_sources, methods=["POST"]),
        Route("/fetch-status/{task_id}", fetches.fetch_status, methods=["GET"]),
        Route("/admin/tasks", admin.list_tasks, methods=["GET"]),
        Route(
            "/admin/tasks/{task_id}/retry",
            dashboard.browser_form(admin.retry_task, "retry"),
            methods=["POST"],
        ),
        Route(
            "/admin/tasks/{task_id}/cancel",
            dashboard.browser_form(admin.cancel_task, "cancel"),
            methods=["POST"],
        ),
        Route("/admin/queue", admin.queue_state, methods=["GET"]),
        Route("/admin/orchestration/run", orchestration.run_daily, methods=["POST"]),
        Route("/admin/orchestration/status/{source_date}", orchestration.daily_status),
        Route("/admin/profiles", orchestration.upsert_profile, methods=["POST"]),
        Route("/admin/profiles", orchestration.list_profiles, methods=["GET"]),
        Route("/admin/profiles/{user_id}", orchestration.remove_profile, methods=["DELETE"]),
        Route("/dashboard", dashboard.dashboard, methods=["GET"]),
        Route("/dashboard/login", dashboard.login, methods=["POST"]),
        Route("/dashboard/logout", dashboard.logout, methods=["POST"]),
        Route("/metrics", metrics.metrics, methods=["GET"]),
        Route("/health", health.health, methods=["GET"]),
        Route("/ready", health.ready, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, StoreError: store_unavailable},
    )


app = create_app()
