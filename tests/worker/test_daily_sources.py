"""A day's sources are fetched once per category and shared, even by concurrent digests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from redis.asyncio import Redis

from paperboy_worker.pipeline.daily_sources import papers_for
from shared import keys
from shared.errors import TransientError
from shared.settings import Settings
from shared.store.sqlite import SqliteBackend
from tests.support import REDIS_DB, REDIS_HOST, REDIS_PORT

API_URL = "http://arxiv.test/api/query"
DAY = date(2026, 11, 22)
SAMPLE = (
    Path(__file__).resolve().parents[2] / "paperboy_worker/samples/arxiv_sample.xml"
).read_bytes()


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    settings = Settings(
        source_mode="live", arxiv_api_url=API_URL, arxiv_page_delay_seconds=0, task_timeout=10
    )
    backend = SqliteBackend(tmp_path / "store.db")
    await backend.open()
    redis = Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    http = httpx.AsyncClient()
    yield {"settings": settings, "backend": backend, "redis": redis, "http": http}
    for category in ("cs.AI", "cs.LG"):
        await redis.delete(f"{keys.PREFIX}lock:sources:{DAY.isoformat()}:{category}")
    await http.aclose()
    await redis.aclose()
    await backend.close()


async def test_concurrent_digests_of_a_new_date_fetch_each_category_once(
    ctx: dict[str, Any],
) -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(API_URL).respond(200, content=SAMPLE)

        results = await asyncio.gather(
            *(papers_for(ctx, DAY, ["cs.AI", "cs.LG"]) for _ in range(10))  # type: ignore[arg-type]
        )
        again = await papers_for(ctx, DAY, ["cs.LG", "cs.AI"])  # type: ignore[arg-type]

    assert route.call_count == 2
    queries = sorted(call.request.url.params["search_query"] for call in route.calls)
    assert queries[0].startswith("cat:cs.AI AND submittedDate:[20261122")
    assert queries[1].startswith("cat:cs.LG AND submittedDate:[20261122")
    ids = {tuple(sorted(i.item_id for i in items)) for items in results}
    assert len(ids) == 1
    assert sorted(i.item_id for i in again) == sorted(next(iter(ids)))
    rows = await ctx["backend"].count(keys.DAILY_SOURCES)
    assert rows == 2


async def test_an_outage_is_not_stored_and_is_retried(ctx: dict[str, Any]) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(API_URL).respond(503)
        with pytest.raises(TransientError, match="503"):
            await papers_for(ctx, DAY, ["cs.AI"])  # type: ignore[arg-type]

    assert await ctx["backend"].count(keys.DAILY_SOURCES) == 0
