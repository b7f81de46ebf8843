"""The `fetch_sources` job: a date's papers fetched into `daily_sources` ahead of its digests."""

from __future__ import annotations

import logging
from datetime import date

from arq import Retry

from paperboy_worker.context import WorkerContext
from paperboy_worker.pipeline.daily_sources import category_papers, default_news
from paperboy_worker.pipeline.sources import merge_items
from shared import queue
from shared.errors import PermanentError, TransientError
from shared.fetches import FetchRepository, FetchTask
from shared.models import TaskStatus
from shared.retry import backoff_delay

log = logging.getLogger("paperboy.fetch")


async def fetch_sources(ctx: WorkerContext, task_id: str) -> str:
    fetches = FetchRepository(ctx["backend"])
    task = await fetches.get(task_id)
    if task is None or task.status.terminal:
        return "nothing to do"
    started = await fetches.start(task)
    if started is None:
        return "claimed elsewhere"
    try:
        result = await _fetch(ctx, started)
    except PermanentError as exc:
        ended = await fetches.finish(
            started, TaskStatus.FAILED, error=exc.message, error_code=exc.code
        )
    except TransientError as exc:
        settings = ctx["settings"]
        if started.attempt >= settings.digest_max_tries:
            ended = await fetches.finish(
                started, TaskStatus.FAILED, error=exc.message, error_code=exc.code
            )
        else:
            delay = backoff_delay(settings.retry_backoff_seconds, started.attempt, exc.retry_after)
            log.warning(
                "fetch failed, retrying in %.1fs: %s",
                delay,
                exc.message,
                extra={"task_id": task_id, "attempt": started.attempt},
            )
            raise Retry(defer=delay) from exc
    else:
        ended = await fetches.finish(started, TaskStatus.COMPLETED, result=result)
    if ended is None:
        return "fenced"
    if ended.callback_url:
        await queue.enqueue_callback(ctx["redis"], task_id, kind="fetch")
    return ended.status.value


async def _fetch(ctx: WorkerContext, task: FetchTask) -> dict[str, object]:
    day = date.fromisoformat(task.source_date)
    groups = [await category_papers(ctx, day, category) for category in task.categories]
    papers = merge_items(groups)
    news, news_error = await default_news(ctx, day)
    result: dict[str, object] = {
        "source_date": task.source_date,
        "arxiv_count": len(papers),
        "news_count": len(news),
        "total_count": len(papers) + len(news),
        "by_category": {c: len(g) for c, g in zip(task.categories, groups, strict=True)},
    }
    if news_error:
        result["news_error"] = news_error
    return result
