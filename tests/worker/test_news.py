"""The NewsAPI source: the exact request, article mapping, error bodies and the reader's query."""

import hashlib
from collections.abc import AsyncIterator, Iterator
from datetime import date
from typing import Any

import httpx
import pytest
import respx

from paperboy_worker.pipeline.news import (
    fetch_news,
    news_query,
    news_reader,
    stored_category,
)
from shared.errors import PermanentError, TransientError
from shared.models import UserInfo
from shared.retry import MAX_RETRY_AFTER_SECONDS
from shared.settings import Settings

BASE_URL = "https://news.test"
EVERYTHING = f"{BASE_URL}/v2/everything"
KEY = "news-key-0123456789"
DAY = date(2026, 11, 22)


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "newsapi_base_url": BASE_URL,
        "newsapi_key": KEY,
        "news_enabled": True,
    }
    values.update(overrides)
    return Settings(**values)


def article(**fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "source": {"id": "the-verge", "name": "The Verge"},
        "author": "Jo Writer",
        "title": "Chip export rules tighten",
        "description": "New rules limit exports of advanced chips.",
        "content": "Regulators announced on Friday that advanced chips need a licence… [+2345 chars]",
        "url": "https://www.theverge.com/2026/11/22/chips",
        "urlToImage": "https://cdn.example/chips.jpg",
        "publishedAt": "2026-11-22T10:15:00Z",
    }
    values.update(fields)
    return values


def ok(*articles: dict[str, Any]) -> httpx.Response:
    return httpx.Response(
        200, json={"status": "ok", "totalResults": len(articles), "articles": list(articles)}
    )


def error(status: int, code: str, **kwargs: Any) -> httpx.Response:
    body = {"status": "error", "code": code, "message": f"{code} happened"}
    return httpx.Response(status, json=body, **kwargs)


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        yield router


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


# The request


async def test_sends_exactly_the_documented_request_with_the_key_in_a_header(
    mock: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    route = mock.get(EVERYTHING).mock(return_value=ok(article()))

    await fetch_news(http, settings(), '"chip export" OR semiconductors', DAY)

    assert route.call_count == 1
    request = route.calls[0].request
    assert request.method == "GET"
    assert (request.url.scheme, request.url.host, request.url.path) == (
        "https",
        "news.test",
        "/v2/everything",
    )
    assert request.headers["X-Api-Key"] == KEY
    assert KEY not in str(request.url)
    assert "apikey" not in {name.lower() for name in request.url.params}
    assert dict(request.url.params.multi_items()) == {
        "q": '"chip export" OR semiconductors',
        "from": "2026-11-22T00:00:00",
        "to": "2026-11-22T23:59:59",
        "language": "en",
        "sortBy": "relevancy",
        "pageSize": "100",
    }
    assert len(request.url.params.multi_items()) == 6


async def test_a_trailing_slash_on_the_base_url_is_harmless(
    mock: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    route = mock.get(EVERYTHING).mock(return_value=ok())

    await fetch_news(http, settings(newsapi_base_url=BASE_URL + "/"), "chips", DAY)

    assert route.call_count == 1


@pytest.mark.parametrize("base", [BASE_URL + "/v2", BASE_URL + "/v2/", EVERYTHING])
async def test_the_documented_v2_base_url_works_too(
    mock: respx.MockRouter, http: httpx.AsyncClient, base: str
) -> None:
    route = mock.get(EVERYTHING).mock(return_value=ok(article()))

    items = await fetch_news(http, settings(newsapi_base_url=base), "chips", DAY)

    assert route.call_count == 1
    assert len(items) == 1


async def test_the_old_filters_are_sent_when_set(
    mock: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    route = mock.get(EVERYTHING).mock(return_value=ok())
    filtered = settings(
        news_language="de",
        news_sources=" bbc-news , the-verge,",
        news_exclude_domains="spam.example, ads.example",
    )

    await fetch_news(http, filtered, "chips", DAY)

    params = route.calls[0].request.url.params
    assert params["language"] == "de"
    assert params["sources"] == "bbc-news,the-verge"
    assert params["excludeDomains"] == "spam.example,ads.example"


async def test_an_empty_language_sends_no_language(
    mock: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    route = mock.get(EVERYTHING).mock(return_value=ok())

    await fetch_news(http, settings(news_language=""), "chips", DAY)

    params = route.calls[0].request.url.params
    assert {"language", "sources", "excludeDomains"}.isdisjoint(params.keys())


def test_one_query_with_the_same_filters_is_stored_once() -> None:
    plain = settings()
    assert stored_category(plain, "chips  OR gpus") == stored_category(plain, "chips OR gpus")
    assert stored_category(plain, "chips") != stored_category(plain, "gpus")
    assert stored_category(plain, "chips") != stored_category(
        settings(news_exclude_domains="spam.example"), "chips"
    )
    assert stored_category(plain, "chips").startswith("news:")


def test_news_is_ranked_against_the_news_interest_when_there_is_one() -> None:
    reader = UserInfo(
        name="Ada", title="Chip designer", goals="compilers", news_interest="EU AI Act"
    )

    words = news_reader(reader).query_text()
    assert "EU AI Act" in words
    assert "compilers" not in words
    assert "Chip designer" not in words
    plain = UserInfo(name="Ada", goals="compilers")
    assert news_reader(plain) == plain


async def test_the_query_is_bounded_and_kept_on_one_line(
    mock: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    route = mock.get(EVERYTHING).mock(return_value=ok())
    long_query = " OR ".join(f'"topic number {n}"' for n in range(60))

    await fetch_news(http, settings(), "chips\r\nOR\tgpus OR  " + long_query, DAY)

    q = route.calls[0].request.url.params["q"]
    assert len(q) <= 500
    assert q.startswith("chips OR gpus OR ")
    assert q.count('"') % 2 == 0  # cut between terms, never inside a phrase
    assert not any(ch in q for ch in "\r\n\t")


async def test_no_key_is_refused_before_any_request(
    mock: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    route = mock.route()

    with pytest.raises(PermanentError) as caught:
        await fetch_news(http, settings(newsapi_key=None), "chips", DAY)
    assert caught.value.code == "news_auth"
    assert route.call_count == 0


async def test_an_empty_query_fetches_nothing(
    mock: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    route = mock.route()

    assert await fetch_news(http, settings(), "  \n ", DAY) == []
    assert route.call_count == 0


# Articles


async def test_articles_become_news_items(mock: respx.MockRouter, http: httpx.AsyncClient) -> None:
    mock.get(EVERYTHING).mock(return_value=ok(article()))

    [item] = await fetch_news(http, settings(), "chips", DAY)

    url = "https://www.theverge.com/2026/11/22/chips"
    assert item.kind == "news"
    assert item.item_id == "news:" + hashlib.sha1(url.encode()).hexdigest()[:16]
    assert item.title == "Chip export rules tighten"
    assert item.abstract == (
        "New rules limit exports of advanced chips. "
        "Regulators announced on Friday that advanced chips need a licence…"
    )
    assert item.url == url
    assert item.source == "The Verge"
    assert item.authors == ["Jo Writer"]
    assert item.published == "2026-11-22T10:15:00Z"


async def test_content_repeating_the_description_is_not_doubled(
    mock: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    mock.get(EVERYTHING).mock(
        return_value=ok(
            article(
                description="New rules limit exports of <b>advanced</b> chips &amp; tools.",
                content="New rules limit exports of advanced chips & tools. [+812 chars]",
                author=None,
                source={"id": None, "name": None},
            )
        )
    )

    [item] = await fetch_news(http, settings(), "chips", DAY)

    assert item.abstract == "New rules limit exports of advanced chips & tools."
    assert item.authors == []
    assert item.source is None


async def test_nul_characters_are_dropped_from_articles_and_errors(
    mock: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    nul = "\x00"
    route = mock.get(EVERYTHING)
    route.mock(return_value=ok(article(title=f"Chip{nul} rules", author=f"Jo{nul}")))

    [item] = await fetch_news(http, settings(), "chips", DAY)
    body = {"status": "error", "code": f"bad{nul}", "message": f"no{nul}pe"}
    route.mock(return_value=httpx.Response(400, json=body))
    with pytest.raises(PermanentError) as caught:
        await fetch_news(http, settings(), "chips", DAY)

    assert (item.title, item.authors) == ("Chip rules", ["Jo"])
    assert nul not in caught.value.message


async def test_removed_and_non_web_articles_are_dropped(
    mock: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    removed = article(
        source={"id": None, "name": "[Removed]"},
        title="[Removed]",
        description="[Removed]",
        content="[Removed]",
        url="https://removed.com",
        author=None,
    )
    mock.get(EVERYTHING).mock(
        return_value=ok(
            removed,
            article(title="[Removed]", url="https://example.com/a"),
            article(url="ftp://example.com/file"),
            article(url="javascript:alert(1)"),
            article(url=None),
            article(title=""),
            article(title="Kept", url="http://example.com/kept"),
            article(title="Kept twice", url="http://example.com/kept"),
        )
    )

    items = await fetch_news(http, settings(), "chips", DAY)

    assert [(item.title, item.url) for item in items] == [("Kept", "http://example.com/kept")]


# Errors


@pytest.mark.parametrize(
    "response",
    [
        error(401, "apiKeyInvalid"),
        error(401, "apiKeyMissing"),
        error(401, "apiKeyDisabled"),
        error(200, "apiKeyInvalid"),
    ],
    ids=["invalid", "missing", "disabled", "error-body-on-200"],
)
async def test_key_problems_are_permanent(
    mock: respx.MockRouter, http: httpx.AsyncClient, response: httpx.Response
) -> None:
    mock.get(EVERYTHING).mock(return_value=response)

    with pytest.raises(PermanentError) as caught:
        await fetch_news(http, settings(), "chips", DAY)
    assert caught.value.code == "news_auth"
    assert KEY not in caught.value.message


async def test_rate_limited_is_transient_with_retry_after(
    mock: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    mock.get(EVERYTHING).mock(
        return_value=error(429, "rateLimited", headers={"Retry-After": "3600"})
    )

    with pytest.raises(TransientError) as caught:
        await fetch_news(http, settings(), "chips", DAY)
    assert caught.value.code == "news_rate_limited"
    assert caught.value.retry_after == 3600.0


@pytest.mark.parametrize(
    "response",
    [
        error(500, "unexpectedError"),
        httpx.Response(502, text="<html>Bad gateway</html>"),
        httpx.Response(503, headers={"Retry-After": "30"}),
        httpx.Response(200, text="not json"),
        httpx.Response(200, json={"status": "ok", "articles": "nope"}),
    ],
    ids=["unexpected", "502-html", "503", "200-not-json", "200-no-articles"],
)
async def test_outages_are_transient(
    mock: respx.MockRouter, http: httpx.AsyncClient, response: httpx.Response
) -> None:
    mock.get(EVERYTHING).mock(return_value=response)

    with pytest.raises(TransientError) as caught:
        await fetch_news(http, settings(), "chips", DAY)
    assert caught.value.code == "source_unavailable"


async def test_retry_after_of_a_server_error_is_passed_on(
    mock: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    mock.get(EVERYTHING).respond(503, headers={"Retry-After": "30"})

    with pytest.raises(TransientError) as caught:
        await fetch_news(http, settings(), "chips", DAY)
    assert caught.value.retry_after == 30.0


async def test_a_huge_retry_after_is_capped(
    mock: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    mock.get(EVERYTHING).mock(
        return_value=error(429, "rateLimited", headers={"Retry-After": "31536000"})
    )

    with pytest.raises(TransientError) as caught:
        await fetch_news(http, settings(), "chips", DAY)
    assert caught.value.retry_after == MAX_RETRY_AFTER_SECONDS


@pytest.mark.parametrize("exc", [httpx.ConnectTimeout("slow"), httpx.ConnectError("refused")])
async def test_unreachable_is_transient(
    mock: respx.MockRouter, http: httpx.AsyncClient, exc: Exception
) -> None:
    mock.get(EVERYTHING).mock(side_effect=exc)

    with pytest.raises(TransientError) as caught:
        await fetch_news(http, settings(), "chips", DAY)
    assert caught.value.code == "source_unavailable"


async def test_a_rejected_query_is_permanent(
    mock: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    mock.get(EVERYTHING).mock(return_value=error(400, "parameterInvalid"))

    with pytest.raises(PermanentError) as caught:
        await fetch_news(http, settings(), "chips", DAY)
    assert caught.value.code == "news_rejected"
    assert "parameterInvalid" in caught.value.message


# The reader's query


def test_news_interest_wins_over_goals() -> None:
    assert news_query("semiconductors", "protein folding") == "semiconductors"


def test_interest_clauses_need_all_their_words_and_quoted_phrases_stay_exact() -> None:
    query = news_query('AI regulation in the EU, "large language models"; robotics', "x")

    assert query == '"large language models" OR (ai AND regulation AND eu) OR robotics'


def test_user_text_cannot_inject_operators_or_exclusions() -> None:
    query = news_query(
        'quantum OR (error) AND correction NOT crypto -bitcoin +x, -"meme coins"', ""
    )

    # Brackets and symbols only separate clauses; "NOT crypto", "-bitcoin" and -"meme coins"
    # are left out rather than turned into wanted words.
    assert query == "quantum OR error OR correction"


def test_goals_give_their_key_phrases_when_there_is_no_interest() -> None:
    goals = "retrieval-augmented generation for question answering with language models"

    assert news_query(None, goals) == (
        '"retrieval-augmented generation" OR "question answering" OR "language models"'
    )


def test_goal_filler_words_are_not_search_terms() -> None:
    goals = "I want to follow the latest research on drug discovery and protein-ligand docking."

    assert news_query("  ", goals) == '"drug discovery" OR "protein-ligand docking"'


def test_long_runs_split_into_short_phrases_and_repeated_ones_come_first() -> None:
    goals = (
        "Federated learning privacy attacks defences. "
        "Differential privacy for trees, differential privacy in practice."
    )

    assert news_query(None, goals) == (
        '"differential privacy" OR "federated learning" OR "privacy attacks defences"'
        " OR trees OR practice"
    )


def test_query_is_bounded_in_terms_and_length() -> None:
    interest = ", ".join(f"topic{n} " + "x" * 30 for n in range(40))

    query = news_query(interest, "")

    assert len(query) <= 500
    assert query.count(" OR ") == 5  # six terms at most


def test_nothing_salient_gives_an_empty_query() -> None:
    assert news_query(None, "Not specified") == ""
    assert news_query("", "the and of 42") == ""
