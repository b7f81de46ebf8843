"""Liveness and readiness."""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from paperboy_api.state import app_state
from shared import keys
from shared.errors import StoreError
from shared.presence import live_workers

log = logging.getLogger("paperboy.api")

VERSION = "0.1.0"


async def health(request: Request) -> Response:
    return JSONResponse({"status": "healthy", "version": VERSION})


async def ready(request: Request) -> Response:
    """200 when Redis, the store and at least one worker answer; 503 naming what is missing.

    Callers need no key here, so a check names the failing part only; the error is logged.
    """
    state = app_state(request)
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(state["redis"].ping(), timeout=3)
        checks["redis"] = "ok"
        workers = await live_workers(state["redis"], state["settings"].lease_seconds)
        checks["workers"] = "ok" if workers else "no live worker (work is accepted and waits)"
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("readiness: Redis unreachable: %r", exc)
        checks["redis"] = "unavailable"
        checks["workers"] = "unknown (Redis unavailable)"
    try:
        await state["backend"].ping()
        checks["store"] = "ok"
    except StoreError as exc:
        log.warning("readiness: store unavailable: %s", exc.message)
        checks["store"] = "unavailable"
    ok = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ok else "not_ready", "checks": checks, "queue": keys.QUEUE},
        status_code=200 if ok else 503,
    )
