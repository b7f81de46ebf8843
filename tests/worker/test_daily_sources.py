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

from paperboy_worker.pipeline.daily_sources import day_news, default_news, papers_for
from paperboy_worker.pipeline.news import stored_category
from shared import keys
from shared.errors import PermanentError, TransientError
from shared.metrics import Metrics
from shared.news_health import news_health
from shared.settings import Settings
from shared.store.sqlite import SqliteBackend
from tests.support import REDIS_DB, REDIS_HOST, REDIS_PORT

API_URL = "http://arxiv.test/api/query"
NEWS_URL = "http://news.test/v2/everything"
DAY = date(2026, 11, 22)
SAMPLE = (
    Path(__file__).resolve().parents[2] / "paperboy_worker/samples/arxiv_sample.xml"
).read_bytes()


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    settings = Settings(
        source_mode="live",
        arxiv_api_url=API_URL,
        arxiv_page_delay_seconds=0,
        task_timeout=10,
        newsapi_base_url="http://news.test/v2",
        newsapi_key="news-key",
    )
    backend = SqliteBackend(tmp_path / "store.db")
    await backend.open()
    redis = Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    http = httpx.AsyncClient()
    await redis.delete(keys.NEWS_HEALTH)
    metrics = Metrics(redis)
    yield {
        "settings": settings,
        "backend": backend,
        "redis": redis,
        "http": http,
        "metrics": metrics,
    }
    news = [stored_category(settings, q) for q in ("chips", "gpus")]
    for category in ("cs.AI", "cs.LG", *news):
        await redis.delete(f"{keys.PREFIX}lock:sources:{DAY.isoformat()}:{category}")
    await redis.delete(keys.NEWS_HEALTH)
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


def articles(*names: str) -> dict[str, Any]:
    return {
        "status": "ok",
        "articles": [
            {"title": f"Story {n}", "url": f"https://news.example/{n}", "source": {"name": "X"}}
            for n in names
        ],
    }


async def test_concurrent_digests_fetch_each_news_query_of_a_date_once(
    ctx: dict[str, Any],
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        query = request.url.params["q"]
        return httpx.Response(200, json=articles(f"{query}-1", f"{query}-2"))

    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(NEWS_URL).mock(side_effect=answer)

        results = await asyncio.gather(
            *(day_news(ctx, DAY, q) for q in ["chips", "gpus"] * 5)  # type: ignore[arg-type]
        )
        quiet = await day_news(ctx, DAY, "chips")  # type: ignore[arg-type]

    assert sorted(call.request.url.params["q"] for call in route.calls) == ["chips", "gpus"]
    assert [len(items) for items in results] == [2] * 10
    assert [i.url for i in quiet] == [
        "https://news.example/chips-1",
        "https://news.example/chips-2",
    ]
    assert await ctx["backend"].count(keys.DAILY_SOURCES) == 2


async def test_a_day_with_no_news_for_a_query_is_stored_and_not_asked_again(
    ctx: dict[str, Any],
) -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(NEWS_URL).respond(200, json=articles())
        assert await day_news(ctx, DAY, "chips") == []  # type: ignore[arg-type]
        assert await day_news(ctx, DAY, "chips") == []  # type: ignore[arg-type]

    assert route.call_count == 1


async def test_failing_news_fetches_are_counted_until_one_succeeds(ctx: dict[str, Any]) -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(NEWS_URL).respond(401, json={"status": "error", "code": "apiKeyInvalid"})
        for _ in range(3):
            with pytest.raises(PermanentError):
                await day_news(ctx, DAY, "chips")  # type: ignore[arg-type]
        failing = await news_health(ctx["redis"])
        route.respond(200, json=articles("a"))
        await day_news(ctx, DAY, "chips")  # type: ignore[arg-type]

    assert (failing.failures, failing.last_error) == (3, "news_auth")
    assert (await news_health(ctx["redis"])).failures == 0
    assert await ctx["backend"].count(keys.DAILY_SOURCES) == 1


async def test_the_default_news_of_a_fetch_task_names_a_lasting_refusal(
    ctx: dict[str, Any],
) -> None:
    ctx["settings"] = ctx["settings"].model_copy(
        update={"news_enabled": True, "news_query": "gpus"}
    )
    with respx.mock(assert_all_called=False) as mock:
        mock.get(NEWS_URL).respond(401, json={"status": "error", "code": "apiKeyInvalid"})
        refused = await default_news(ctx, DAY)  # type: ignore[arg-type]
        mock.get(NEWS_URL).respond(200, json=articles("a", "b"))
        fetched = await default_news(ctx, DAY)  # type: ignore[arg-type]

    assert refused == ([], "news_auth")
    assert [len(fetched[0]), fetched[1]] == [2, None]
    off = ctx["settings"].model_copy(update={"news_enabled": False})
    assert await default_news({**ctx, "settings": off}, DAY) == ([], None)  # type: ignore[arg-type]
