"""Link classes from extraction evidence, and which news picks reach a digest because of them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import fakeredis
import httpx
import pytest
import respx

from paperboy_worker.pipeline.extract import Extraction, Extractor
from paperboy_worker.pipeline.items import Item, Pick
from paperboy_worker.pipeline.links import choose_news, classify
from shared.metrics import Metrics
from shared.settings import Settings

TAVILY = "http://tavily.test"
ARTICLE = "The committee published its report on chip exports this morning. " * 8
PAYWALL = "Subscribe to continue reading. Already a subscriber? Sign in."


@pytest.mark.parametrize(
    ("found", "status"),
    [
        (Extraction(text=ARTICLE), "accessible"),
        (Extraction(text=ARTICLE + " Subscribe to continue reading." + ARTICLE * 3), "accessible"),
        (Extraction(text=PAYWALL), "suspected_paywall"),
        (
            Extraction(text=ARTICLE[:60] + " This article is for subscribers only."),
            "suspected_paywall",
        ),
        (Extraction(text="Loading…"), "unknown"),
        (Extraction(failure="HTTP 404 Not Found"), "broken"),
        (Extraction(failure="410 Gone"), "broken"),
        (Extraction(failure="Name or service not known"), "broken"),
        (Extraction(failure="Timeout while fetching"), "unknown"),
        (None, "unknown"),
    ],
)
def test_a_link_is_classed_from_the_extraction_alone(found: Extraction | None, status: str) -> None:
    assert classify(found) == status


def pick(rank: int, name: str) -> Pick:
    item = Item(
        item_id=f"news:{name}",
        kind="news",
        title=f"Story {name}",
        abstract="NewsAPI's preview.",
        url=f"https://news.example/{name}",
    )
    return Pick(item=item, relevance=1 - rank / 10, rank=rank)


def tavily(request: httpx.Request) -> httpx.Response:
    """The stand-in: the link's last path part says what the publisher serves."""
    url = json.loads(request.content)["urls"][0]
    name = url.rsplit("/", 1)[-1]
    if name.startswith("gone"):
        return httpx.Response(
            200, json={"results": [], "failed_results": [{"url": url, "error": "404 Not Found"}]}
        )
    text = PAYWALL if name.startswith("paid") else ARTICLE
    return httpx.Response(200, json={"results": [{"url": url, "raw_content": text}]})


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        router.post(f"{TAVILY}/extract").mock(side_effect=tavily)
        yield router


@pytest.fixture
async def extractor() -> AsyncIterator[Extractor]:
    redis = fakeredis.FakeAsyncRedis()
    settings = Settings(tavily_api_key="tvly-key", tavily_base_url=TAVILY)
    async with httpx.AsyncClient() as http:
        yield Extractor(http, redis, settings, Metrics(redis))
    await redis.aclose()


def names(picks: list[Pick]) -> list[str]:
    return [p.item.item_id.removeprefix("news:") for p in picks]


async def test_broken_links_are_dropped_and_paywalls_replaced_by_the_next_best(
    mock: respx.MockRouter, extractor: Extractor
) -> None:
    ranked = [pick(i, n) for i, n in enumerate(["a", "gone1", "paid1", "b", "c", "d"], start=1)]

    chosen = await choose_news(extractor, ranked, 3)

    assert names(chosen) == ["a", "b", "c"]
    assert [p.rank for p in chosen] == [1, 2, 3]
    assert {p.item.link_status for p in chosen} == {"accessible"}
    assert chosen[0].item.abstract == ARTICLE.strip()  # the full text, for the analysis
    # Extracted in rounds: three, then the two places left; "d" was never needed.
    assert mock.routes[0].call_count == 5
    await extractor.metrics.flush()
    counts = await extractor.metrics.snapshot()
    assert counts["paperboy_news_links|outcome=dropped,status=broken"] == 1
    assert counts["paperboy_news_links|outcome=dropped,status=suspected_paywall"] == 1
    assert counts["paperboy_news_links|outcome=kept,status=accessible"] == 3


async def test_a_paywall_with_no_replacement_stays_labelled_and_last(
    mock: respx.MockRouter, extractor: Extractor
) -> None:
    ranked = [pick(1, "paid1"), pick(2, "a"), pick(3, "gone1")]

    chosen = await choose_news(extractor, ranked, 2)

    assert names(chosen) == ["a", "paid1"]
    assert [p.item.link_status for p in chosen] == ["accessible", "suspected_paywall"]
    assert chosen[1].item.abstract == "NewsAPI's preview."


async def test_without_tavily_every_link_is_unknown_and_keeps_its_preview(
    mock: respx.MockRouter,
) -> None:
    redis = fakeredis.FakeAsyncRedis()
    async with httpx.AsyncClient() as http:
        plain = Extractor(http, redis, Settings(), Metrics(redis))
        chosen = await choose_news(plain, [pick(1, "gone1"), pick(2, "a"), pick(3, "b")], 2)
    await redis.aclose()

    assert names(chosen) == ["gone1", "a"]
    assert {p.item.link_status for p in chosen} == {"unknown"}
    assert {p.item.abstract for p in chosen} == {"NewsAPI's preview."}
    assert mock.routes[0].call_count == 0
