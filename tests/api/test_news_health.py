"""A news source that keeps failing shows on `/ready` and in `/metrics`, without making the API
unready: digests are still made from papers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from starlette.testclient import TestClient

from paperboy_api.app import create_app
from shared.news_health import record_failure, record_success
from tests.api.support import api_settings
from tests.support import API_KEY


def fail_news(redis_url: str, times: int, code: str = "news_auth") -> None:
    async def record() -> None:
        client = Redis.from_url(redis_url)
        for _ in range(times):
            await record_failure(client, code)
        await client.aclose()

    asyncio.run(record())


def recover_news(redis_url: str) -> None:
    async def record() -> None:
        client = Redis.from_url(redis_url)
        await record_success(client)
        await client.aclose()

    asyncio.run(record())


@pytest.fixture
def client(redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = api_settings(
        sqlite_path=tmp_path / "api.db",
        redis_url=redis_url,
        news_enabled=True,
        news_failure_alert=3,
    )
    with TestClient(create_app(settings), headers={"X-API-Key": API_KEY}) as test_client:
        yield test_client


def test_failing_news_is_named_on_ready_and_counted_in_metrics(
    client: TestClient, redis_url: str
) -> None:
    assert client.get("/ready").json()["checks"]["news"] == "ok"

    fail_news(redis_url, 2)
    assert client.get("/ready").json()["checks"]["news"] == "ok"  # a blip is not an alert
    fail_news(redis_url, 1)
    ready = client.get("/ready")
    metrics = client.get("/metrics").text

    assert ready.json()["checks"]["news"] == "failing (3 fetches in a row, last: news_auth)"
    assert ready.json()["checks"]["redis"] == "ok"
    assert "paperboy_news_consecutive_failures 3.0" in metrics

    recover_news(redis_url)
    assert client.get("/ready").json()["checks"]["news"] == "ok"
    assert "paperboy_news_consecutive_failures 0.0" in client.get("/metrics").text


def test_news_turned_off_is_not_checked(redis_url: str, tmp_path: Path) -> None:
    settings = api_settings(sqlite_path=tmp_path / "api.db", redis_url=redis_url)
    with TestClient(create_app(settings)) as plain:
        fail_news(redis_url, 5)
        assert "news" not in plain.get("/ready").json()["checks"]
