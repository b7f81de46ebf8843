"""Tavily Extract: the request, bounded retries, the pause every worker honours, the fallback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx
from redis.asyncio import Redis

from paperboy_worker.pipeline.extract import TEXT_CHARS, Extraction, Extractor
from shared import keys
from shared.metrics import Metrics
from shared.settings import Settings
from tests.support import REDIS_DB, REDIS_HOST, REDIS_PORT

TAVILY = "http://tavily.test"
EXTRACT = f"{TAVILY}/extract"
KEY = "tvly-test-key"
URL = "https://news.example/2026/11/22/chips"
ARTICLE = "Regulators announced new export rules for advanced chips. " * 10


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "tavily_api_key": KEY,
        "tavily_base_url": TAVILY,
        "extract_retry_delay_seconds": 0,
    }
    values.update(overrides)
    return Settings(**values)


def extracted(url: str = URL, text: str = ARTICLE) -> httpx.Response:
    return httpx.Response(
        200, json={"results": [{"url": url, "raw_content": text}], "failed_results": []}
    )


def failed(error: str, url: str = URL) -> httpx.Response:
    return httpx.Response(
        200, json={"results": [], "failed_results": [{"url": url, "error": error}]}
    )


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    await _clean(client)
    yield client
    await _clean(client)
    await client.aclose()


async def _clean(redis: Redis) -> None:
    stale = [key async for key in redis.scan_iter(match=f"{keys.PREFIX}extract*")]
    if stale:
        await redis.delete(*stale)


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        yield router


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def extractor(http: httpx.AsyncClient, redis: Redis, **overrides: Any) -> Extractor:
    return Extractor(http, redis, settings(**overrides), Metrics(redis))


async def test_sends_the_url_with_the_key_in_a_header_and_reads_the_text(
    mock: respx.MockRouter, http: httpx.AsyncClient, redis: Redis
) -> None:
    route = mock.post(EXTRACT).mock(return_value=extracted())

    found = await extractor(http, redis).extract(URL)

    assert found == Extraction(text=ARTICLE)
    request = route.calls[0].request
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    body = json.loads(request.content)
    assert body["urls"] == [URL]
    assert KEY not in request.content.decode()


async def test_long_text_is_cut_and_a_tavily_failure_is_evidence(
    mock: respx.MockRouter, http: httpx.AsyncClient, redis: Redis
) -> None:
    mock.post(EXTRACT).mock(
        side_effect=[extracted(text="x" * (TEXT_CHARS * 2)), failed("HTTP 404 Not Found")]
    )
    one = extractor(http, redis)

    long = await one.extract(URL)
    gone = await one.extract(URL + "/other")

    assert long is not None and long.text is not None and len(long.text) == TEXT_CHARS
    assert gone == Extraction(failure="HTTP 404 Not Found")


async def test_no_key_means_no_request_and_no_evidence(
    mock: respx.MockRouter, http: httpx.AsyncClient, redis: Redis
) -> None:
    route = mock.route()

    assert await extractor(http, redis, tavily_api_key=None).extract(URL) is None
    assert route.call_count == 0


async def test_outages_are_retried_a_bounded_number_of_times_then_give_up(
    mock: respx.MockRouter, http: httpx.AsyncClient, redis: Redis
) -> None:
    route = mock.post(EXTRACT).mock(
        side_effect=[httpx.ConnectError("down"), httpx.Response(503), httpx.Response(502)]
    )

    found = await extractor(http, redis, extract_retries=2).extract(URL)

    assert found is None
    assert route.call_count == 3


async def test_a_retry_that_succeeds_gives_the_text(
    mock: respx.MockRouter, http: httpx.AsyncClient, redis: Redis
) -> None:
    route = mock.post(EXTRACT).mock(side_effect=[httpx.Response(500), extracted()])

    found = await extractor(http, redis).extract(URL)

    assert found == Extraction(text=ARTICLE)
    assert route.call_count == 2


async def test_a_refused_request_is_not_retried(
    mock: respx.MockRouter, http: httpx.AsyncClient, redis: Redis
) -> None:
    route = mock.post(EXTRACT).mock(return_value=httpx.Response(401))

    assert await extractor(http, redis, extract_retries=3).extract(URL) is None
    assert route.call_count == 1


async def test_repeated_429s_pause_extraction_for_every_worker(
    mock: respx.MockRouter, http: httpx.AsyncClient, redis: Redis
) -> None:
    route = mock.post(EXTRACT).mock(return_value=httpx.Response(429))

    assert await extractor(http, redis).extract(URL) is None
    assert route.call_count == 2
    ttl = await redis.ttl(keys.EXTRACT_PAUSE)
    assert 86_000 < ttl <= 86_400

    # Another worker (another extractor, same Redis) does not ask Tavily while paused.
    route.mock(return_value=extracted())
    assert await extractor(http, redis).extract(URL + "/b") is None
    assert route.call_count == 2

    await redis.delete(keys.EXTRACT_PAUSE)
    assert await extractor(http, redis).extract(URL + "/b") == Extraction(text=ARTICLE)


async def test_one_429_is_retried_and_does_not_pause(
    mock: respx.MockRouter, http: httpx.AsyncClient, redis: Redis
) -> None:
    mock.post(EXTRACT).mock(side_effect=[httpx.Response(429), extracted()])

    assert await extractor(http, redis).extract(URL) == Extraction(text=ARTICLE)
    assert not await redis.exists(keys.EXTRACT_PAUSE)


async def test_a_link_is_extracted_once_and_shared(
    mock: respx.MockRouter, http: httpx.AsyncClient, redis: Redis
) -> None:
    route = mock.post(EXTRACT).mock(return_value=extracted())

    first = await extractor(http, redis).extract(URL)
    second = await extractor(http, redis).extract(URL)

    assert first == second == Extraction(text=ARTICLE)
    assert route.call_count == 1
