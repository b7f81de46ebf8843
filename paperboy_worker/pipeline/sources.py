"""Where a digest's papers come from: the bundled sample, or the arXiv API, per category."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from datetime import date
from typing import NamedTuple

import httpx

from paperboy_worker.pipeline import arxiv_feed
from paperboy_worker.pipeline.items import Item
from shared.errors import PermanentError, TransientError
from shared.retry import is_retryable_status, retry_after
from shared.settings import Settings

log = logging.getLogger("paperboy.sources")


class _Page(NamedTuple):
    items: list[Item]
    total: int


async def fetch_arxiv_category(
    http: httpx.AsyncClient, settings: Settings, day: date, category: str
) -> list[Item]:
    """One category's submissions on `day`, with abstracts; what `daily_sources` stores."""
    return await fetch_arxiv(http, settings, arxiv_query(day, [category]))


def merge_items(groups: Iterable[Iterable[Item]]) -> list[Item]:
    """The union of several listings, each item once: arXiv lists a cross-listed paper under
    every one of its categories."""
    merged: dict[str, Item] = {}
    for group in groups:
        for item in group:
            merged.setdefault(item.item_id, item)
    return list(merged.values())


def arxiv_query(day: date, categories: Sequence[str]) -> str:
    """The API's `search_query` for the submissions of `day` in any of `categories`."""
    stamp = day.strftime("%Y%m%d")
    cats = " OR ".join(f"cat:{c}" for c in categories)
    if len(categories) > 1:
        cats = f"({cats})"
    return f"{cats} AND submittedDate:[{stamp}0000 TO {stamp}2359]"


async def fetch_arxiv(http: httpx.AsyncClient, settings: Settings, query: str) -> list[Item]:
    """Every hit of `query`, page by page, up to `arxiv_max_results`.

    All or nothing: a failed or inconsistent page raises rather than returning part of a day.
    """
    pages: list[list[Item]] = []
    start, total = 0, settings.arxiv_max_results
    while start < min(total, settings.arxiv_max_results):
        if start:
            await asyncio.sleep(settings.arxiv_page_delay_seconds)  # arXiv asks for 3 s
        size = min(settings.arxiv_page_size, settings.arxiv_max_results - start)
        page = await _page(http, settings.arxiv_api_url, query, start, size)
        if not page.items and start < page.total:
            # Under load arXiv sometimes answers an empty page mid-listing; keeping what came
            # before would store a truncated day as if it were complete.
            raise TransientError(
                f"arXiv API sent an empty page at {start} of {page.total}",
                code="source_unavailable",
            )
        pages.append(page.items)
        start, total = start + size, page.total
    items = merge_items(pages)
    log.info("arxiv fetched", extra={"query": query, "total": total, "items": len(items)})
    if total > settings.arxiv_max_results:
        log.warning(
            "arxiv listing truncated",
            extra={"query": query, "total": total, "kept": settings.arxiv_max_results},
        )
    return items


async def _page(http: httpx.AsyncClient, url: str, query: str, start: int, size: int) -> _Page:
    params: dict[str, str | int] = {
        "search_query": query,
        "start": start,
        "max_results": size,
        "sortBy": "submittedDate",
        "sortOrder": "descending",
    }
    try:
        response = await http.get(url, params=params)
    except httpx.HTTPError as exc:
        raise TransientError(f"arXiv API unreachable: {exc!r}", code="source_unavailable") from exc
    if is_retryable_status(response.status_code):
        raise TransientError(
            f"arXiv API answered {response.status_code}",
            code="source_unavailable",
            retry_after=retry_after(response.headers),
        )
    if response.status_code != 200:
        raise PermanentError(f"arXiv API answered {response.status_code}", code="source_rejected")
    try:
        feed = response.content
        return _Page(arxiv_feed.parse_feed(feed), arxiv_feed.total_results(feed))
    except arxiv_feed.FeedError as exc:
        raise TransientError(
            f"arXiv API sent an unreadable feed: {exc}", code="source_unavailable"
        ) from exc
