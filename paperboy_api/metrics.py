"""`GET /metrics`: shared counters and histograms from Redis, plus live queue gauges."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from paperboy_api.errors import RETRY_AFTER, ApiError
from paperboy_api.state import app_state
from shared import keys, queue
from shared.metrics import Metrics, render
from shared.models import TaskStatus
from shared.news_health import news_health
from shared.presence import live_workers
from shared.store import Cond


async def metrics(request: Request) -> Response:
    state = app_state(request)
    try:
        values = await Metrics(state["redis"]).snapshot()
        summary = await queue.queue_summary(state["redis"])
        workers = await live_workers(state["redis"], state["settings"].lease_seconds)
        news = await news_health(state["redis"])
    except RedisError as exc:
        raise ApiError(503, "Redis is unreachable", RETRY_AFTER) from exc
    gauges = {
        "paperboy_queue_depth": float(summary["queued"]),
        "paperboy_jobs_running": float(summary["running"]),
        "paperboy_jobs_deferred": float(summary["deferred"]),
        "paperboy_oldest_queued_age_seconds": float(summary["oldest_queued_age_s"]),
        "paperboy_workers_live": float(len(workers)),
        "paperboy_news_consecutive_failures": float(news.failures),
    }
    for status in (TaskStatus.PENDING, TaskStatus.PROCESSING):
        count = await state["backend"].count(
            keys.DIGEST_TASKS, [Cond("status", "eq", status.value)]
        )
        gauges[f"paperboy_tasks_{status.value}"] = float(count)
    return Response(render(values, gauges), media_type=CONTENT_TYPE_LATEST)
