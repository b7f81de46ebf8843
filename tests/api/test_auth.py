"""Who may call the API: required secrets, one authentication middleware for every protected
route, and failed keys and logins throttled per client address, in-process on a real Redis."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from paperboy_api import app as app_module
from paperboy_api.app import create_app
from shared.settings import ApiSettings
from tests.support import API_KEY, BIN, SESSION_SECRET, free_port

ORIGIN = "http://testserver"
LIMIT = 3
WINDOW = 60


def settings(tmp_path: Path, redis_url: str, **overrides: Any) -> ApiSettings:
    values: dict[str, Any] = {
        "api_key": API_KEY,
        "session_secret": SESSION_SECRET,
        "sqlite_path": tmp_path / "api.db",
        "redis_url": redis_url,
        "auth_max_failures": LIMIT,
        "auth_failure_window_seconds": WINDOW,
    }
    values.update(overrides)
    return ApiSettings(**values)


def client_at(config: ApiSettings, address: str = "192.0.2.1") -> TestClient:
    return TestClient(
        create_app(config), base_url=ORIGIN, client=(address, 50000), follow_redirects=False
    )


@pytest.fixture
def config(tmp_path: Path, redis_url: str) -> ApiSettings:
    return settings(tmp_path, redis_url)


@pytest.fixture
def client(config: ApiSettings) -> Iterator[TestClient]:
    with client_at(config) as test_client:
        yield test_client


def protected_paths() -> list[tuple[str, str]]:
    """Every route behind the middleware, with its path parameters filled in."""
    found: list[tuple[str, str]] = []

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            if isinstance(route, Mount):
                walk(route.routes, prefix + route.path)
            elif isinstance(route, Route):
                path = re.sub(r"\{[^}]+\}", "2026-11-22", prefix + route.path)
                found.extend((method, path) for method in sorted(route.methods or {"GET"}))

    walk(app_module.PROTECTED_ROUTES, "")
    return found


@pytest.mark.parametrize(("method", "path"), protected_paths())
def test_every_protected_route_refuses_a_caller_without_credentials(
    client: TestClient, method: str, path: str
) -> None:
    response = client.request(method, path)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_the_admin_routes_sit_under_one_mount() -> None:
    admin = [r for r in app_module.PROTECTED_ROUTES if isinstance(r, Mount)]

    assert [mount.path for mount in admin] == ["/admin"]
    assert all(not path.startswith("/admin") for path in _top_level_paths())


def _top_level_paths() -> list[str]:
    routes = [*app_module.PUBLIC_ROUTES, *app_module.PROTECTED_ROUTES]
    return [route.path for route in routes if isinstance(route, Route)]


def test_an_unknown_path_reveals_nothing_without_a_key(client: TestClient) -> None:
    assert client.get("/no-such-route").status_code == 401
    assert client.get("/no-such-route", headers={"X-API-Key": API_KEY}).status_code == 404


def test_health_and_the_login_page_need_no_key(client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    assert client.get("/dashboard").status_code == 200


@pytest.mark.parametrize(
    ("field", "value"),
    [("api_key", None), ("api_key", ""), ("api_key", "dev-key"), ("api_key", "k" * 15)]
    + [("session_secret", None), ("session_secret", "s" * 31)],
)
def test_a_missing_or_short_secret_is_refused(
    tmp_path: Path, redis_url: str, field: str, value: str | None
) -> None:
    values = {"api_key": API_KEY, "session_secret": SESSION_SECRET, field: value}
    present = {name: v for name, v in values.items() if v is not None}

    with pytest.raises(ValidationError, match=field):
        ApiSettings(_env_file=None, sqlite_path=tmp_path / "api.db", **present)


def wrong_keys(client: TestClient, count: int) -> list[int]:
    return [
        client.get("/admin/tasks", headers={"X-API-Key": f"wrong-{n}"}).status_code
        for n in range(count)
    ]


def test_wrong_keys_from_one_address_are_throttled(client: TestClient) -> None:
    statuses = wrong_keys(client, LIMIT + 1)
    right_key = client.get("/admin/tasks", headers={"X-API-Key": API_KEY})

    assert statuses == [403] * LIMIT + [429]
    # Once throttled, the address cannot keep guessing: even the right key waits.
    assert right_key.status_code == 429
    assert 0 < int(right_key.headers["retry-after"]) <= WINDOW
    assert right_key.json() == {"detail": "Too many failed attempts; retry later"}


def test_the_count_is_per_address_and_shared_by_every_api_process(config: ApiSettings) -> None:
    with client_at(config) as first, client_at(config) as second:
        wrong_keys(first, LIMIT)
        from_another_process = second.get("/admin/tasks", headers={"X-API-Key": API_KEY})
    with client_at(config, "192.0.2.99") as elsewhere:
        from_another_address = elsewhere.get("/admin/tasks", headers={"X-API-Key": API_KEY})

    assert from_another_process.status_code == 429
    assert from_another_address.status_code == 200


def test_successes_are_not_counted(client: TestClient) -> None:
    statuses = {
        client.get("/admin/tasks", headers={"X-API-Key": API_KEY}).status_code
        for _ in range(LIMIT * 3)
    }

    assert statuses == {200}


def test_wrong_dashboard_logins_are_throttled(client: TestClient) -> None:
    def log_in(key: str) -> Any:
        return client.post("/dashboard/login", data={"api_key": key}, headers={"Origin": ORIGIN})

    statuses = [log_in(f"wrong-{n}").status_code for n in range(LIMIT)]
    throttled = log_in(API_KEY)

    assert statuses == [403] * LIMIT
    assert throttled.status_code == 429
    assert "set-cookie" not in throttled.headers
    assert 0 < int(throttled.headers["retry-after"]) <= WINDOW
    assert 'action="/dashboard/login"' in throttled.text


def test_behind_a_proxy_the_configured_header_names_the_client(
    tmp_path: Path, redis_url: str
) -> None:
    config = settings(tmp_path, redis_url, client_address_header="Fly-Client-IP")
    with client_at(config, "10.0.0.1") as proxy:
        for n in range(LIMIT):
            proxy.get(
                "/admin/tasks", headers={"X-API-Key": "wrong", "Fly-Client-IP": "198.51.100.7"}
            )
        attacker = proxy.get(
            "/admin/tasks", headers={"X-API-Key": API_KEY, "Fly-Client-IP": "198.51.100.7"}
        )
        someone_else = proxy.get(
            "/admin/tasks", headers={"X-API-Key": API_KEY, "Fly-Client-IP": "203.0.113.5"}
        )

    assert attacker.status_code == 429
    assert someone_else.status_code == 200


@pytest.mark.integration
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SESSION_SECRET": SESSION_SECRET}, "API_KEY: Field required"),
        ({"API_KEY": "", "SESSION_SECRET": SESSION_SECRET}, "API_KEY: "),
        ({"API_KEY": "dev-key", "SESSION_SECRET": SESSION_SECRET}, "API_KEY: "),
        ({"API_KEY": API_KEY}, "SESSION_SECRET: Field required"),
    ],
)
def test_the_api_process_stops_with_one_line_without_its_secrets(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    result = subprocess.run(
        [str(BIN / "uvicorn"), "paperboy_api.app:app", "--port", str(free_port())],
        env={"PATH": "/usr/bin:/bin", "SQLITE_PATH": str(tmp_path / "api.db"), **env},
        cwd=tmp_path,  # no .env from the checkout
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("paperboy: invalid configuration: ")
    assert expected in result.stderr
