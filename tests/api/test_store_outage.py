"""A store in trouble: every endpoint answers a prompt JSON 503 with Retry-After, `/ready` names
the failing part without its error text, and one stuck store call does not stall the others.

The trouble is real: PostgREST refusing connections or answering errors, or another connection
holding the SQLite file's write lock.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from paperboy_api.app import create_app
from tests.api.support import api_settings, supabase_settings
from tests.shared.fake_postgrest import FakePostgrest
from tests.support import API_KEY

HEADERS = {"X-API-Key": API_KEY}
STORE_TIMEOUT = 0.5
PROMPTLY = 3.0
USER_ID = "6f1c2a9e-0b7d-4c3e-9a51-2d8f0e4b7c16"
PROFILE = {"user_id": USER_ID, "name": "Ada", "goals": "graphs"}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "api.db"


@pytest.fixture
def client(db_path: Path) -> Iterator[TestClient]:
    settings = api_settings(
        sqlite_path=db_path,
        store_timeout_seconds=STORE_TIMEOUT,
        redis_url="redis://127.0.0.1:1/15",  # nothing here gets as far as Redis
    )
    with TestClient(create_app(settings), headers=HEADERS) as test_client:
        yield test_client


@pytest.fixture
def supabase_client(postgrest: FakePostgrest) -> Iterator[TestClient]:
    settings = supabase_settings("redis://127.0.0.1:1/15")
    with TestClient(create_app(settings), headers=HEADERS) as test_client:
        yield test_client


@contextmanager
def write_locked(db_path: Path) -> Iterator[None]:
    """Hold the file's write lock from another connection; readers go on (WAL), writers wait."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def assert_store_503(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["Retry-After"] == "5"
    assert response.json() == {"detail": "The state store is unavailable; retry shortly"}


ENDPOINTS = [
    ("GET", "/digest-status/t-1"),
    ("GET", "/digests/t-1"),
    ("GET", "/fetch-status/t-1"),
    ("GET", "/admin/tasks"),
    ("GET", "/admin/tasks?status=failed"),
    ("GET", "/admin/orchestration/status/2026-11-22"),
    ("GET", "/admin/profiles"),
    ("POST", "/admin/profiles"),
    ("DELETE", f"/admin/profiles/{USER_ID}"),
    ("POST", "/admin/tasks/t-1/retry"),
    ("POST", "/admin/tasks/t-1/cancel"),
]


OUTAGES = {
    "connections refused": lambda fake: fake.refuse_connections(),
    "server error": lambda fake: fake.fail_with(500, {"message": "boom", "code": "XX000"}),
    "gateway timeout": lambda fake: fake.fail_with(504),
}


@pytest.mark.parametrize("outage", OUTAGES)
@pytest.mark.parametrize(("method", "path"), ENDPOINTS, ids=[f"{m} {p}" for m, p in ENDPOINTS])
def test_store_outage_is_a_json_503(
    supabase_client: TestClient, postgrest: FakePostgrest, outage: str, method: str, path: str
) -> None:
    OUTAGES[outage](postgrest)
    body = PROFILE if (method, path) == ("POST", "/admin/profiles") else None

    assert_store_503(supabase_client.request(method, path, json=body))


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/admin/profiles"),
        ("DELETE", f"/admin/profiles/{USER_ID}"),
    ],
)
def test_a_write_held_by_a_lock_is_a_prompt_503(
    client: TestClient, db_path: Path, method: str, path: str
) -> None:
    client.post("/admin/profiles", json=PROFILE).raise_for_status()
    with write_locked(db_path):
        started = time.monotonic()
        response = client.request(method, path, json=PROFILE if method == "POST" else None)
        elapsed = time.monotonic() - started

    assert_store_503(response)
    assert elapsed < PROMPTLY


def test_ready_names_the_failing_part_without_its_error(
    supabase_client: TestClient, postgrest: FakePostgrest
) -> None:
    postgrest.refuse_connections()

    response = supabase_client.get("/ready", headers={"X-API-Key": ""})

    assert response.status_code == 503
    assert response.json()["checks"] == {
        "redis": "unavailable",
        "workers": "unknown (Redis unavailable)",
        "store": "unavailable",
    }
    for leak in ("supabase", "refused", "Error", "digest_tasks", "127.0.0.1"):
        assert leak not in response.text


def test_a_stuck_write_does_not_stall_unrelated_reads(client: TestClient, db_path: Path) -> None:
    slowest, reads = 0.0, 0
    with write_locked(db_path), ThreadPoolExecutor(max_workers=1) as pool:
        stuck = pool.submit(client.post, "/admin/profiles", json=PROFILE)
        # Read for as long as the write waits on the lock: each read must go past it.
        while not stuck.done():
            started = time.monotonic()
            assert client.get("/digest-status/t-1").status_code == 404
            slowest, reads = max(slowest, time.monotonic() - started), reads + 1
        write = stuck.result()

    assert write.status_code == 503
    # Queued behind the stuck write, reads would take turns with it: one or two in its wait,
    # each taking most of the store timeout.
    assert reads > 5
    assert slowest < STORE_TIMEOUT
