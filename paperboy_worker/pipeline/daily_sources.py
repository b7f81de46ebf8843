"""A day's sources, fetched once per (source date, category) and shared by every digest of it.

A category is an arXiv category, or `news:<hash>` for the news of one query (with the filters
in force), so news is shared the same way between readers who ask the same query.

The first digest (or fetch task) of a new date takes a Redis lock per category and fetches; the
others wait for the stored row instead of each hitting the source. The row in the store is
what counts: a lock lost with Redis only costs a second fetch.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date

from redis.exceptions import RedisError

from paperboy_worker.context import WorkerContext
from paperboy_worker.pipeline import arxiv_feed
from paperboy_worker.pipeline.items import Item
from paperboy_worker.pipeline.news import fetch_news, stored_category
from paperboy_worker.pipeline.sources import fetch_arxiv_category, merge_items
from shared import keys
from shared.errors import PaperboyError, PermanentError, TransientError
from shared.models import stamp
from shared.news_health import record_failure, record_success

log = logging.getLogger("paperboy.sources")

LOCK_SECONDS = 300
POLL_SECONDS = 0.5

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class _Source:
    """One (date, category) of sources, how to fetch it, and whether an empty answer is kept."""

    day: date
    category: str
    fetch: Callable[[], Awaitable[list[Item]]]
    keep_empty: bool


async def papers_for(ctx: WorkerContext, day: date, categories: Sequence[str]) -> list[Item]:
    """The union of the day's papers in `categories` (sample mode: the bundled feed)."""
    settings = ctx["settings"]
    if settings.source_mode == "sample":
        return await arxiv_feed.load_sample(settings.arxiv_sample_path, categories)
    groups = [await category_papers(ctx, day, category) for category in dict.fromkeys(categories)]
    return merge_items(groups)


async def stored(ctx: WorkerContext, day: date, category: str) -> list[Item] | None:
    row = await ctx["backend"].get(
        keys.DAILY_SOURCES, {"source_date": day.isoformat(), "category": category}
    )
    return [Item.model_validate(item) for item in row["items"]] if row else None


async def category_papers(ctx: WorkerContext, day: date, category: str) -> list[Item]:
    async def fetch() -> list[Item]:
        return await fetch_arxiv_category(ctx["http"], ctx["settings"], day, category)

    # An empty answer is not stored: arXiv sometimes answers nothing for a day that has
    # papers, and a stored empty row would hide them from every later digest.
    return await _shared(ctx, _Source(day, category, fetch, keep_empty=False))


async def day_news(ctx: WorkerContext, day: date, query: str) -> list[Item]:
    """The day's articles for `query`, fetched from NewsAPI once per (date, query)."""

    async def fetch() -> list[Item]:
        try:
            items = await fetch_news(ctx["http"], ctx["settings"], query, day)
        except PaperboyError as exc:
            ctx["metrics"].inc("paperboy_news_fetches", outcome="failed")
            await record_failure(ctx["redis"], exc.code)
            raise
        ctx["metrics"].inc("paperboy_news_fetches", outcome="ok")
        await record_success(ctx["redis"])
        return items

    # A narrow query often has no article on a day; that answer is kept like any other.
    category = stored_category(ctx["settings"], query)
    return await _shared(ctx, _Source(day, category, fetch, keep_empty=True))


async def default_news(ctx: WorkerContext, day: date) -> tuple[list[Item], str | None]:
    """The default query's news (NEWS_QUERY), which every reader without an interest shares.

    News refused for good (a bad key) leaves the papers fetched, as it does a digest; the code
    says why the count is 0, and `/ready` shows the source failing.
    """
    settings = ctx["settings"]
    if not (settings.news_enabled and settings.newsapi_key is not None):
        return [], None
    try:
        return await day_news(ctx, day, settings.news_query), None
    except PermanentError as exc:
        log.warning(
            "default news not fetched: %s", exc.message, extra={"source_date": day.isoformat()}
        )
        return [], exc.code


async def _shared(ctx: WorkerContext, source: _Source) -> list[Item]:
    deadline = time.monotonic() + ctx["settings"].task_timeout
    lock = f"{keys.PREFIX}lock:sources:{source.day.isoformat()}:{source.category}"
    while True:
        cached = await stored(ctx, source.day, source.category)
        if cached is not None:
            return cached
        token = uuid.uuid4().hex
        if await _acquire(ctx, lock, token):
            try:
                return await _fetch_and_store(ctx, source)
            finally:
                await _release(ctx, lock, token)
        if time.monotonic() > deadline:
            raise TransientError(
                f"{source.category} for {source.day.isoformat()} is still being fetched elsewhere",
                code="source_unavailable",
            )
        await asyncio.sleep(POLL_SECONDS)


async def _fetch_and_store(ctx: WorkerContext, source: _Source) -> list[Item]:
    cached = await stored(ctx, source.day, source.category)  # filled while we waited for the lock
    if cached is not None:
        return cached
    items = await source.fetch()
    if items or source.keep_empty:
        row = {
            "source_date": source.day.isoformat(),
            "category": source.category,
            "items": [item.model_dump(mode="json") for item in items],
            "item_count": len(items),
            "fetched_at": stamp(),
        }
        await ctx["backend"].upsert(keys.DAILY_SOURCES, row)
    log.info(
        "sources fetched",
        extra={
            "items": len(items),
            "category": source.category,
            "source_date": source.day.isoformat(),
        },
    )
    return items


async def _acquire(ctx: WorkerContext, lock: str, token: str) -> bool:
    try:
        return bool(await ctx["redis"].set(lock, token, nx=True, ex=LOCK_SECONDS))
    except RedisError:
        return True  # no Redis, no coordination: fetching twice beats not fetching


async def _release(ctx: WorkerContext, lock: str, token: str) -> None:
    try:
        await ctx["redis"].eval(_RELEASE, 1, lock, token)  # type: ignore[misc]
    except RedisError:
        log.warning("sources lock not released; it expires on its own")
