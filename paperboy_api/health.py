"""Liveness and readiness."""

from __future__ import annotations

import asyncio
import logging
from importlib.metadata import version

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from paperboy_api.state import app_state
from shared import keys
from shared.errors import StoreError
from shared.news_health import news_health
from shared.presence import live_workers

log = logging.getLogger("paperboy.api")

# The installed distribution's version, so the answer follows pyproject.toml on each release.
VERSION = version("paperboy")


async def health(request: Request) -> Response:
    return JSONResponse({"status": "healthy", "version": VERSION})


async def ready(request: Request) -> Response:
    """200 when Redis, the store and at least one worker answer; 503 naming what is missing.

    Callers need no key here, so a check names the failing part only; the error is logged.
    News, when enabled, is reported but does not decide readiness: digests are made without it.
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
    if state["settings"].news_enabled:
        checks["news"] = await _news_check(state["redis"], state["settings"].news_failure_alert)
    return JSONResponse(
        {"status": "ready" if ok else "not_ready", "checks": checks, "queue": keys.QUEUE},
        status_code=200 if ok else 503,
    )


async def _news_check(redis: Redis, alert_after: int) -> str:
    try:
        health = await news_health(redis)
    except (RedisError, OSError) as exc:
        log.warning("readiness: news health unknown: %r", exc)
        return "unknown (Redis unavailable)"
    if health.failures >= alert_after:
        return f"failing ({health.failures} fetches in a row, last: {health.last_error})"
    return "ok"
