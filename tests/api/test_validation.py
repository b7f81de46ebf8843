"""Malformed and hostile requests: each gets a clear 4xx and creates no task."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from paperboy_api.app import create_app
from shared import keys
from shared.settings import ApiSettings
from tests.support import API_KEY, SESSION_SECRET, digest_body

HEADERS = {"X-API-Key": API_KEY}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = ApiSettings(
        api_key=API_KEY,
        session_secret=SESSION_SECRET,
        sqlite_path=tmp_path / "api.db",
        # No Redis is reached: nothing here is valid enough to be queued.
        redis_url="redis://127.0.0.1:1/15",
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def task_count(tmp_path: Path) -> int:
    with sqlite3.connect(tmp_path / "api.db") as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {keys.DIGEST_TASKS}").fetchone()[0])


def with_user(**fields: Any) -> dict[str, Any]:
    user = {"name": "Ada", "goals": "graphs"}
    user.update(fields)
    return digest_body(user_info=user)


MEGABYTE = "x" * 1_000_000

HOSTILE_BODIES: list[tuple[str, Any, str]] = [
    ("missing user_info", {"top_n_articles": 5}, "user_info"),
    ("user_info not an object", {"user_info": "Ada"}, "user_info"),
    ("missing name", {"user_info": {"goals": "graphs"}}, "name"),
    ("blank name", with_user(name="   "), "name"),
    ("name null", with_user(name=None), "name"),
    ("name is a number", with_user(name=42), "name"),
    ("name too long", with_user(name="n" * 201), "name"),
    ("title too long", with_user(title="t" * 201), "title"),
    ("goals too long", with_user(goals="g" * 4001), "goals"),
    ("news_interest too long", with_user(news_interest="i" * 501), "news_interest"),
    ("goals is a list", with_user(goals=["a", "b"]), "goals"),
    ("top_n_articles 0", digest_body(top_n_articles=0), "top_n_articles"),
    ("top_n_articles 500", digest_body(top_n_articles=500), "top_n_articles"),
    ("top_n_articles string", digest_body(top_n_articles="5"), "top_n_articles"),
    ("top_n_articles float", digest_body(top_n_articles=5.5), "top_n_articles"),
    ("top_n_articles bool", digest_body(top_n_articles=True), "top_n_articles"),
    ("top_n_news negative", digest_body(top_n_news=-1), "top_n_news"),
    ("bad date format", digest_body(source_date="22/11/2026"), "source_date"),
    ("impossible date", digest_body(source_date="2026-02-30"), "source_date"),
    ("future date", digest_body(target_date="2999-01-01"), "target_date"),
    ("date is a number", digest_body(source_date=20261122), "source_date"),
    ("javascript callback", digest_body(callback_url="javascript:alert(1)"), "callback_url"),
    ("ftp callback", digest_body(callback_url="ftp://example.com/x"), "callback_url"),
    ("loopback callback", digest_body(callback_url="http://127.0.0.1/hook"), "callback_url"),
    ("short loopback", digest_body(callback_url="http://127.1/hook"), "callback_url"),
    ("decimal loopback", digest_body(callback_url="http://2130706433/hook"), "callback_url"),
    ("hex loopback", digest_body(callback_url="http://0x7f000001/hook"), "callback_url"),
    ("mapped v6 loopback", digest_body(callback_url="http://[::ffff:127.0.0.1]/"), "callback_url"),
    ("private callback", digest_body(callback_url="http://10.0.0.5/hook"), "callback_url"),
    ("metadata callback", digest_body(callback_url="http://169.254.169.254/"), "callback_url"),
    ("localhost callback", digest_body(callback_url="http://localhost:8080/"), "callback_url"),
    (
        "huge callback",
        digest_body(callback_url="https://example.com/" + "a" * 2100),
        "callback_url",
    ),
    (
        "callback with credentials",
        digest_body(callback_url="https://u:p@example.com/"),
        "callback_url",
    ),
    ("no host callback", digest_body(callback_url="https:///path"), "callback_url"),
    ("empty categories", digest_body(categories=[]), "categories"),
    ("too many categories", digest_body(categories=[f"cs.A{i}" for i in range(11)]), "categories"),
    ("bad category", digest_body(categories=["cs.AI; DROP TABLE"]), "categories"),
    ("categories a string", digest_body(categories="cs.AI"), "categories"),
    (
        "both sources off",
        digest_body(digest_sources={"arxiv": False, "news_api": False}),
        "digest_sources",
    ),
    ("sources flag a string", digest_body(digest_sources={"arxiv": "yes"}), "arxiv"),
    ("body is a list", [1, 2, 3], "body"),
]


@pytest.mark.parametrize(
    ("case", "body", "field"), HOSTILE_BODIES, ids=[c[0] for c in HOSTILE_BODIES]
)
def test_hostile_body_is_422_naming_the_field(
    client: TestClient, tmp_path: Path, case: str, body: Any, field: str
) -> None:
    response = client.post("/generate-digest", json=body, headers=HEADERS)

    assert response.status_code == 422, response.text
    assert field in json.dumps(response.json()["detail"])
    assert task_count(tmp_path) == 0


def test_megabyte_string_is_413(client: TestClient, tmp_path: Path) -> None:
    response = client.post("/generate-digest", json=with_user(goals=MEGABYTE), headers=HEADERS)

    assert response.status_code == 413
    assert "64" in response.json()["detail"] or "bytes" in response.json()["detail"]
    assert task_count(tmp_path) == 0


def test_chunked_oversized_body_is_413(client: TestClient, tmp_path: Path) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"user_info": {"name": "Ada", "goals": "'
        for _ in range(100):
            yield b"y" * 1024
        yield b'"}}'

    headers = {**HEADERS, "Content-Type": "application/json"}
    response = client.post("/generate-digest", content=chunks(), headers=headers)

    assert response.status_code == 413
    assert task_count(tmp_path) == 0


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"", "application/json", 400),
        (b'{"user_info": {"name": "Ada"}}', "text/plain", 415),
        (b'{"user_info": {"name": "Ada"}}', "application/x-www-form-urlencoded", 415),
        (b"\xff\xfe garbage", "application/json", 400),
    ],
    ids=["bad json", "empty body", "text/plain", "form", "not utf-8"],
)
def test_unreadable_body(
    client: TestClient, tmp_path: Path, content: bytes, content_type: str, status: int
) -> None:
    headers = {**HEADERS, "Content-Type": content_type}
    response = client.post("/generate-digest", content=content, headers=headers)

    assert response.status_code == status
    assert response.json()["detail"]
    assert task_count(tmp_path) == 0


@pytest.mark.parametrize(
    ("key", "status"),
    [("k" * 201, 422), ("caf\u00e9", 422), ("two\nlines", 422)],
    ids=["too long", "not ascii", "control character"],
)
def test_bad_idempotency_key(client: TestClient, tmp_path: Path, key: str, status: int) -> None:
    headers = {**HEADERS, "Idempotency-Key": key}
    try:
        response = client.post("/generate-digest", json=digest_body(), headers=headers)
    except Exception:  # noqa: BLE001 - the HTTP client itself refuses some header values
        return
    assert response.status_code == status
    assert "Idempotency-Key" in json.dumps(response.json())
    assert task_count(tmp_path) == 0


def test_missing_key_is_401(client: TestClient, tmp_path: Path) -> None:
    response = client.post("/generate-digest", json=digest_body())

    assert response.status_code == 401
    assert response.json() == {"detail": "Missing API key: send X-API-Key or Authorization: Bearer"}
    assert task_count(tmp_path) == 0


def test_wrong_key_is_403(client: TestClient, tmp_path: Path) -> None:
    response = client.post("/generate-digest", json=digest_body(), headers={"X-API-Key": "nope"})

    assert response.status_code == 403
    assert task_count(tmp_path) == 0


def test_bearer_token_is_accepted_for_reads(client: TestClient) -> None:
    response = client.get("/digest-status/unknown", headers={"Authorization": f"Bearer {API_KEY}"})

    assert response.status_code == 404
    assert response.json() == {"detail": "Task not found"}


def test_status_of_hostile_task_id_is_404(client: TestClient) -> None:
    response = client.get("/digest-status/" + "a" * 300, headers=HEADERS)

    assert response.status_code == 404


def test_health_needs_no_key(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "healthy"


def test_unknown_fields_are_ignored_but_redis_down_is_503(
    client: TestClient, tmp_path: Path
) -> None:
    """A valid request while Redis is unreachable: 503 with Retry-After, and no task left over."""
    response = client.post("/generate-digest", json=digest_body(extra_field="x"), headers=HEADERS)

    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert task_count(tmp_path) == 0
