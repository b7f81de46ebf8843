"""The `fetch_sources` job: a date's papers fetched into `daily_sources` ahead of its digests.

The fetch kind is the whole of this file plus its declaration, `shared.lifecycle.FETCH`.
"""

from __future__ import annotations

from datetime import date

from paperboy_worker.context import WorkerContext
from paperboy_worker.lifecycle import run_task
from paperboy_worker.pipeline.daily_sources import category_papers, default_news
from paperboy_worker.pipeline.sources import merge_items
from shared.fetches import FetchTask
from shared.lifecycle import FETCH
from shared.store import Row
from shared.tasks import Repository


async def fetch_sources(ctx: WorkerContext, task_id: str) -> str:
    return await run_task(ctx, FETCH, task_id, fetch)


async def fetch(ctx: WorkerContext, task: FetchTask) -> Row:
    await Repository(ctx["backend"], FETCH).progress(task, "Fetching sources")
    day = date.fromisoformat(task.source_date)
    groups = [await category_papers(ctx, day, category) for category in task.categories]
    papers = merge_items(groups)
    news, news_error = await default_news(ctx, day)
    counts: dict[str, object] = {
        "source_date": task.source_date,
        "arxiv_count": len(papers),
        "news_count": len(news),
        "total_count": len(papers) + len(news),
        "by_category": {c: len(g) for c, g in zip(task.categories, groups, strict=True)},
    }
    if news_error:
        counts["news_error"] = news_error
    return {"result": counts}
