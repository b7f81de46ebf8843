"""`POST /hooks/welcome`: the API in-process on SQLite and the real Redis, a worker process, and a
local Resend stand-in that takes 10 s to answer."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from pydantic import SecretStr
from starlette.testclient import TestClient

from paperboy_api.app import create_app
from shared import arqstore, keys
from shared.settings import ApiSettings
from tests.mail_servers import RESEND_KEY, Answer, ResendStandIn, resend_stand_in
from tests.processes import Proc, base_env
from tests.support import API_KEY, SESSION_SECRET, wait_until

USER = "6f1b2c3d-0000-4000-8000-0000000000aa"
WELCOME_FROM = "Welcome <hello@paper-boy.test>"
DIGEST_FROM = "Paperboy Digest <digest@paper-boy.test>"


def hook(**record: Any) -> dict[str, Any]:
    """A Supabase database-webhook payload, as the frontend's signup insert fires it."""
    row = {"id": "0b9c8d7e-0000-4000-8000-000000000001", "user_id": USER, "name": "Ada", **record}
    return {"type": "INSERT", "table": "profiles", "schema": "public", "record": row}


@pytest.fixture
def resend() -> Iterator[ResendStandIn]:
    with resend_stand_in() as stand_in:
        yield stand_in


def email_settings(resend: ResendStandIn) -> dict[str, str]:
    return {
        "email_provider": "resend",
        "resend_api_key": RESEND_KEY,
        "resend_base_url": resend.url,
        "resend_from_address": DIGEST_FROM,
        "welcome_from_address": WELCOME_FROM,
    }


def api(tmp_path: Path, redis_url: str, **fields: Any) -> TestClient:
    settings = ApiSettings(
        api_key=SecretStr(API_KEY),
        session_secret=SecretStr(SESSION_SECRET),
        sqlite_path=tmp_path / "paperboy.db",
        redis_url=redis_url,
        **fields,
    )
    return TestClient(create_app(settings), headers={"X-API-Key": API_KEY})


@pytest.fixture
def client(tmp_path: Path, redis_url: str, resend: ResendStandIn) -> Iterator[TestClient]:
    with api(tmp_path, redis_url, **email_settings(resend)) as test_client:
        yield test_client


def timed_post(client: TestClient, body: dict[str, Any]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = client.post("/hooks/welcome", json=body)
    return response, time.monotonic() - started


def delivery_state(path: Path) -> str | None:
    with sqlite3.connect(path) as conn:
        row = conn.execute(
            f"select state from {keys.EMAIL_DELIVERIES} where delivery_key = ?",
            (f"welcome:{USER}",),
        ).fetchone()
    return row[0] if row else None


@pytest.mark.integration
def test_the_hook_answers_at_once_while_the_provider_is_slow_and_retries_send_one_welcome(
    tmp_path: Path,
    redis_url: str,
    resend: ResendStandIn,
    client: TestClient,
    processes: Callable[..., Proc],
) -> None:
    resend.script.append(Answer(delay=10))
    processes("worker", base_env(redis_url, tmp_path / "paperboy.db", **email_settings(resend)))

    first, first_took = timed_post(client, hook(email="ada@example.com"))
    wait_until(resend.received, timeout=20)  # the worker is sending; Resend takes 10 s
    retry, retry_took = timed_post(client, hook(email="ada@example.com"))

    assert (first.status_code, first.json()) == (202, {"status": "accepted"})
    assert (retry.status_code, retry.json()) == (202, {"status": "accepted"})
    assert first_took < 1 and retry_took < 1
    wait_until(lambda: delivery_state(tmp_path / "paperboy.db") == "sent", timeout=30)
    # A webhook retried after the send: its job runs, finds `sent`, and sends nothing.
    assert client.post("/hooks/welcome", json=hook(email="ada@example.com")).status_code == 202
    job_key = arqstore.job_key(keys.email_job_id(f"welcome:{USER}"))
    with redis.Redis.from_url(redis_url) as queue:
        wait_until(lambda: not queue.exists(job_key), timeout=20)
    [request] = resend.received()
    assert request.headers["Idempotency-Key"] == f"welcome:{USER}"
    assert request.body["from"] == WELCOME_FROM
    assert request.body["to"] == ["ada@example.com"]
    assert request.body["subject"] == "Welcome to Paperboy"


def test_a_record_without_an_email_is_skipped(client: TestClient, tmp_path: Path) -> None:
    for body in (hook(), hook(email=None), {"type": "INSERT", "table": "profiles"}):
        response = client.post("/hooks/welcome", json=body)
        assert (response.status_code, response.json()["status"]) == (202, "skipped")
    assert delivery_state(tmp_path / "paperboy.db") is None


def test_without_an_email_provider_the_hook_is_unavailable(tmp_path: Path, redis_url: str) -> None:
    with api(tmp_path, redis_url) as client:
        response = client.post("/hooks/welcome", json=hook(email="ada@example.com"))
    assert response.status_code == 503


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"email": "ada\u0000@example.com"}, "email"),
        ({"email": "ada@example.com\r\nBcc: eve@example.com"}, "email"),
        ({"email": "a" * 320 + "@example.com"}, "email"),
        ({"email": "ada@example.com", "name": "A" * 201}, "name"),
        ({"email": "ada@example.com", "user_id": None, "id": None}, "user_id"),
        ({"email": "ada@example.com", "user_id": "ada\u00e9 x"}, "user_id"),
        ({"email": "ada@example.com", "user_id": "u" * 65}, "user_id"),
    ],
)
def test_fields_are_validated_and_bounded(
    client: TestClient, record: dict[str, Any], field: str
) -> None:
    response = client.post("/hooks/welcome", json=hook(**record))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == field


def test_the_hook_needs_the_api_key(client: TestClient) -> None:
    response = client.post(
        "/hooks/welcome", json=hook(email="ada@example.com"), headers={"X-API-Key": "wrong"}
    )
    assert response.status_code == 403
