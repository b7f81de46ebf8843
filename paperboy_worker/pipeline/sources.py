"""Where a digest's candidates come from: the bundled sample, or the arXiv API."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import date

import httpx

from paperboy_worker.pipeline import arxiv_feed
from paperboy_worker.pipeline.items import Item
from shared.errors import PermanentError, TransientError
from shared.settings import Settings

log = logging.getLogger("paperboy.sources")


async def load_items(
    http: httpx.AsyncClient, settings: Settings, day: date, categories: Sequence[str]
) -> list[Item]:
    if settings.source_mode == "sample":
        return await arxiv_feed.load_sample(settings.arxiv_sample_path, categories)
    return await fetch_arxiv(http, settings, day, categories)


def arxiv_query(day: date, categories: Sequence[str]) -> str:
    cats = " OR ".join(f"cat:{c}" for c in categories)
    stamp = day.strftime("%Y%m%d")
    return f"({cats}) AND submittedDate:[{stamp}0000 TO {stamp}2359]"


async def fetch_arxiv(
    http: httpx.AsyncClient, settings: Settings, day: date, categories: Sequence[str]
) -> list[Item]:
    """All of a day's submissions in `categories`, with abstracts, page by page."""
    items: list[Item] = []
    start = 0
    while start < settings.arxiv_max_results:
        if start:
            await asyncio.sleep(settings.arxiv_page_delay_seconds)  # the API asks for 3 s
        page = await _page(http, settings, day, categories, start)
        items.extend(page.items)
        start += settings.arxiv_page_size
        if not page.items or start >= page.total:
            break
    return list({item.item_id: item for item in items}.values())


class _Page:
    def __init__(self, items: list[Item], total: int) -> None:
        self.items = items
        self.total = total


async def _page(
    http: httpx.AsyncClient, settings: Settings, day: date, categories: Sequence[str], start: int
) -> _Page:
    params: dict[str, str | int] = {
        "search_query": arxiv_query(day, categories),
        "start": start,
        "max_results": settings.arxiv_page_size,
        "sortBy": "submittedDate",
        "sortOrder": "descending",
    }
    try:
        response = await http.get(settings.arxiv_api_url, params=params, timeout=30)
    except httpx.HTTPError as exc:
        raise TransientError(f"arXiv API unreachable: {exc!r}", code="source_unavailable") from exc
    if response.status_code in {408, 429} or response.status_code >= 500:
        raise TransientError(
            f"arXiv API answered {response.status_code}",
            code="source_unavailable",
            retry_after=_retry_after(response),
        )
    if response.status_code != 200:
        raise PermanentError(f"arXiv API answered {response.status_code}", code="source_rejected")
    try:
        return _Page(
            arxiv_feed.parse_feed(response.content), arxiv_feed.total_results(response.content)
        )
    except arxiv_feed.FeedError as exc:
        raise TransientError(
            f"arXiv API sent an unreadable feed: {exc}", code="source_invalid"
        ) from exc


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None
