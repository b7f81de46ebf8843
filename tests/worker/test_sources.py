"""The arXiv source: exact requests, paging, bounds and how outages are reported."""

import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import respx

from paperboy_worker.pipeline.arxiv_feed import SAMPLE_PATH
from paperboy_worker.pipeline.sources import (
    arxiv_query,
    fetch_arxiv_category,
    merge_items,
)
from shared.errors import PermanentError, TransientError
from shared.retry import MAX_RETRY_AFTER_SECONDS
from shared.settings import Settings

API_URL = "https://arxiv.test/api/query"
DAY = date(2026, 11, 22)
SAMPLE = SAMPLE_PATH.read_bytes()


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "source_mode": "live",
        "arxiv_api_url": API_URL,
        "arxiv_page_size": 200,
        "arxiv_max_results": 1000,
        "arxiv_page_delay_seconds": 0,
    }
    values.update(overrides)
    return Settings(**values)


def feed(numbers: range | list[int], total: int, categories: tuple[str, ...] = ("cs.CL",)) -> bytes:
    terms = "".join(f'<category term="{c}"/>' for c in categories)
    entries = "".join(
        f"<entry><id>http://arxiv.org/abs/2611.{n:05d}v1</id><title>Paper {n}</title>"
        f"<summary>Abstract {n}.</summary>{terms}</entry>"
        for n in numbers
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<feed xmlns="http://www.w3.org/2005/Atom" '
        'xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/">'
        f"<opensearch:totalResults>{total}</opensearch:totalResults>{entries}</feed>"
    ).encode()


def paged(
    total: int, categories: tuple[str, ...] = ("cs.CL",)
) -> Callable[[httpx.Request], httpx.Response]:
    """A fake arXiv answering each request with the slice of a `total`-paper listing it asks for."""

    def answer(request: httpx.Request) -> httpx.Response:
        start = int(request.url.params["start"])
        size = int(request.url.params["max_results"])
        numbers = range(start, min(start + size, total))
        return httpx.Response(200, content=feed(numbers, total, categories))

    return answer


def sent(route: respx.Route, name: str) -> list[str]:
    return [call.request.url.params[name] for call in route.calls]


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        yield router


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


# The request


def test_query_for_one_category_and_day() -> None:
    assert (
        arxiv_query(DAY, ["cs.CL"]) == "cat:cs.CL AND submittedDate:[202611220000 TO 202611222359]"
    )


def test_query_for_several_categories_groups_them() -> None:
    assert (
        arxiv_query(date(2026, 1, 5), ["cs.AI", "hep-th"])
        == "(cat:cs.AI OR cat:hep-th) AND submittedDate:[202601050000 TO 202601052359]"
    )


async def test_category_fetch_sends_exactly_the_documented_request(
    mock: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    route = mock.get(API_URL).respond(200, content=SAMPLE)

    items = await fetch_arxiv_category(http, settings(), DAY, "cs.CL")

    assert route.call_count == 1
    request = route.calls[0].request
    assert request.method == "GET"
    assert (request.url.scheme, request.url.host, request.url.path) == (
        "https",
        "arxiv.test",
        "/api/query",
    )
    assert dict(request.url.params.multi_items()) == {
        "search_query": "cat:cs.CL AND submittedDate:[202611220000 TO 202611222359]",
        "start": "0",
        "max_results": "200",
        "sortBy": "submittedDate",
        "sortOrder": "descending",
    }
    assert len(request.url.params.multi_items()) == 5
    # The whole sample (totalResults 60) in one page, abstracts included.
    assert len(items) == 60
    assert all(item.kind == "paper" and item.abstract for item in items)
    assert items[0].item_id == "arXiv:2411.01105"


# Paging


async def test_pages_until_total_results_with_a_polite_delay(
    mock: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    times: list[float] = []
    answer = paged(total=5)

    def timed(request: httpx.Request) -> httpx.Response:
        times.append(time.monotonic())
        return answer(request)

    route = mock.get(API_URL).mock(side_effect=timed)
    started = time.monotonic()

    items = await fetch_arxiv_category(
        http, settings(arxiv_page_size=2, arxiv_page_delay_seconds=0.05), DAY, "cs.CL"
    )

    assert sent(route, "start") == ["0", "2", "4"]
    assert sent(route, "max_results") == ["2", "2", "2"]
    assert set(sent(route, "search_query")) == {
        "cat:cs.CL AND submittedDate:[202611220000 TO 202611222359]"
    }
    assert [item.title for item in items] == [f"Paper {n}" for n in range(5)]
    assert times[0] - started < 0.05  # the first page is not delayed
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(gap >= 0.05 for gap in gaps), gaps


async def test_stops_when_the_last_page_ends_exactly_at_total(
    mock: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    route = mock.get(API_URL).mock(side_effect=paged(total=4))

    items = await fetch_arxiv_category(http, settings(arxiv_page_size=2), DAY, "cs.CL")

    assert sent(route, "start") == ["0", "2"]
    assert len(items) == 4


async def test_max_results_bounds_pages_and_items(
    mock: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    route = mock.get(API_URL).mock(side_effect=paged(total=10))

    items = await fetch_arxiv_category(
        http, settings(arxiv_page_size=3, arxiv_max_results=7), DAY, "cs.CL"
    )

    assert sent(route, "start") == ["0", "3", "6"]
    assert sent(route, "max_results") == ["3", "3", "1"]
    assert len(items) == 7


async def test_an_empty_day_is_one_request_and_no_items(
    mock: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    route = mock.get(API_URL).respond(200, content=feed([], total=0))

    assert await fetch_arxiv_category(http, settings(), DAY, "cs.CL") == []
    assert route.call_count == 1


async def test_an_empty_page_before_total_is_an_outage_not_the_end(
    mock: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    mock.get(API_URL).mock(
        side_effect=[
            httpx.Response(200, content=feed(range(2), total=5)),
            httpx.Response(200, content=feed([], total=5)),
        ]
    )

    with pytest.raises(TransientError) as caught:
        await fetch_arxiv_category(http, settings(arxiv_page_size=2), DAY, "cs.CL")
    assert caught.value.code == "source_unavailable"


async def test_a_failed_later_page_fails_the_whole_fetch(
    mock: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    mock.get(API_URL).mock(
        side_effect=[httpx.Response(200, content=feed(range(2), total=5)), httpx.Response(503)]
    )

    with pytest.raises(TransientError):
        await fetch_arxiv_category(http, settings(arxiv_page_size=2), DAY, "cs.CL")


# Outages and refusals


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
async def test_throttling_and_server_errors_are_transient(
    mock: respx.MockRouter, http: httpx.AsyncClient, status: int
) -> None:
    mock.get(API_URL).respond(status, text="busy")

    with pytest.raises(TransientError) as caught:
        await fetch_arxiv_category(http, settings(), DAY, "cs.CL")
    assert caught.value.code == "source_unavailable"
    assert caught.value.retry_after is None


async def test_retry_after_seconds_are_passed_on(
    mock: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    mock.get(API_URL).respond(503, headers={"Retry-After": "120"})

    with pytest.raises(TransientError) as caught:
        await fetch_arxiv_category(http, settings(), DAY, "cs.CL")
    assert caught.value.retry_after == 120.0


async def test_retry_after_http_date_is_passed_on(
    mock: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    later = datetime.now(UTC) + timedelta(seconds=90)
    mock.get(API_URL).respond(429, headers={"Retry-After": format_datetime(later, usegmt=True)})

    with pytest.raises(TransientError) as caught:
        await fetch_arxiv_category(http, settings(), DAY, "cs.CL")
    assert caught.value.retry_after is not None
    assert 80 <= caught.value.retry_after <= 90


async def test_a_huge_retry_after_is_capped(
    mock: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    mock.get(API_URL).respond(503, headers={"Retry-After": "31536000"})

    with pytest.raises(TransientError) as caught:
        await fetch_arxiv_category(http, settings(), DAY, "cs.CL")
    assert caught.value.retry_after == MAX_RETRY_AFTER_SECONDS


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("eof")],
)
async def test_connection_failures_are_transient(
    mock: respx.MockRouter, http: httpx.AsyncClient, error: Exception
) -> None:
    mock.get(API_URL).mock(side_effect=error)

    with pytest.raises(TransientError) as caught:
        await fetch_arxiv_category(http, settings(), DAY, "cs.CL")
    assert caught.value.code == "source_unavailable"


@pytest.mark.parametrize("status", [400, 403, 404])
async def test_other_client_errors_are_permanent(
    mock: respx.MockRouter, http: httpx.AsyncClient, status: int
) -> None:
    mock.get(API_URL).respond(status)

    with pytest.raises(PermanentError) as caught:
        await fetch_arxiv_category(http, settings(), DAY, "cs.CL")
    assert caught.value.code == "source_rejected"


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body>Service busy</body></html>",
        SAMPLE[: len(SAMPLE) // 2],
        b"",
        b'<?xml version="1.0"?><!DOCTYPE feed [<!ENTITY a "aaaa">]><feed>&a;</feed>',
        feed(range(1), total=1).replace(
            b"<opensearch:totalResults>1", b"<opensearch:totalResults>?"
        ),
    ],
    ids=["html", "truncated", "empty", "dtd", "no-total"],
)
async def test_an_unreadable_feed_is_transient_never_empty(
    mock: respx.MockRouter, http: httpx.AsyncClient, body: bytes
) -> None:
    mock.get(API_URL).respond(200, content=body)

    with pytest.raises(TransientError) as caught:
        await fetch_arxiv_category(http, settings(), DAY, "cs.CL")
    assert caught.value.code == "source_unavailable"


# Several categories


async def test_a_paper_listed_under_two_categories_is_merged_once(
    mock: respx.MockRouter, http: httpx.AsyncClient
) -> None:
    listings = {
        "cat:cs.CL AND submittedDate:[202611220000 TO 202611222359]": feed([1, 2], 2),
        # Paper 2 is cross-listed, so arXiv lists it under both categories.
        "cat:cs.LG AND submittedDate:[202611220000 TO 202611222359]": feed([2, 3], 2),
    }

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=listings[request.url.params["search_query"]])

    mock.get(API_URL).mock(side_effect=answer)

    fetched = [
        await fetch_arxiv_category(http, settings(), DAY, category)
        for category in ("cs.CL", "cs.LG")
    ]

    assert [i.item_id for i in fetched[1]] == ["arXiv:2611.00002", "arXiv:2611.00003"]
    assert [i.item_id for i in merge_items(fetched)] == [
        "arXiv:2611.00001",
        "arXiv:2611.00002",
        "arXiv:2611.00003",
    ]
