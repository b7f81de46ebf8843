"""`POST /admin/orchestration/run`: `retry_failed` reaches the daily run's job, in-process on the
real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from arq.jobs import deserialize_job
from pydantic import SecretStr
from starlette.testclient import TestClient

from paperboy_api.app import create_app
from shared import arqstore, queue
from shared.settings import ApiSettings
from tests.support import API_KEY, SESSION_SECRET


@pytest.fixture
def client(tmp_path: Path, redis_url: str) -> Iterator[TestClient]:
    settings = ApiSettings(
        api_key=SecretStr(API_KEY),
        session_secret=SecretStr(SESSION_SECRET),
        sqlite_path=tmp_path / "paperboy.db",
        redis_url=redis_url,
    )
    with TestClient(create_app(settings), headers={"X-API-Key": API_KEY}) as test_client:
        yield test_client


def queued_runs(redis_url: str) -> list[tuple[object, ...]]:
    with redis.Redis.from_url(redis_url) as client:
        raw = [client.get(key) for key in client.scan_iter(arqstore.job_key("daily:*"))]
    return [tuple(deserialize_job(job, deserializer=queue.deserialize).args) for job in raw if job]


@pytest.mark.parametrize("retry", [True, False])
def test_retry_failed_reaches_the_daily_run(
    client: TestClient, redis_url: str, retry: bool
) -> None:
    response = client.post(
        "/admin/orchestration/run", json={"source_date": "2026-11-22", "retry_failed": retry}
    )

    assert response.status_code == 202
    assert response.json() == {
        "source_date": "2026-11-22",
        "retry_failed": retry,
        "status": "accepted",
    }
    assert queued_runs(redis_url) == [("2026-11-22", retry)]


def test_retry_failed_must_be_a_boolean(client: TestClient) -> None:
    response = client.post("/admin/orchestration/run", json={"retry_failed": "yes"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "retry_failed"]
