"""The dashboard's login, session cookie and origin checks, in-process behind the test client."""

from __future__ import annotations

import asyncio
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from itsdangerous import TimestampSigner
from starlette.testclient import TestClient

from paperboy_api import session
from paperboy_api.app import create_app
from shared import keys
from shared.models import TaskStatus
from shared.settings import ApiSettings
from shared.store.sqlite import SqliteBackend
from tests.history_rows import add_delivery, add_digest, drop_deliveries_table, midnight
from tests.support import API_KEY, REDIS_DB, REDIS_HOST, REDIS_PORT, SESSION_SECRET, digest_body

ORIGIN = "http://testserver"
SAME_ORIGIN = {"Origin": ORIGIN}
BROWSER = {"Origin": ORIGIN, "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
NO_REDIS = "redis://127.0.0.1:1/15"


def make_client(tmp_path: Path, redis_url: str, base_url: str = ORIGIN) -> TestClient:
    settings = ApiSettings(
        api_key=API_KEY,
        session_secret=SESSION_SECRET,
        sqlite_path=tmp_path / "api.db",
        redis_url=redis_url,
    )
    return TestClient(create_app(settings), base_url=base_url, follow_redirects=False)


@pytest.fixture
def client(tmp_path: Path, redis_url: str) -> Iterator[TestClient]:
    # Sessions live in Redis, so every client here has one; `redis_client` is the same.
    with make_client(tmp_path, redis_url) as test_client:
        yield test_client


@pytest.fixture
def redis_client(client: TestClient) -> TestClient:
    return client


@pytest.fixture
def redis_db(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    yield connection
    connection.close()


def log_in(client: TestClient, key: str = API_KEY, **headers: str) -> tuple[int, str, str]:
    response = client.post(
        "/dashboard/login", data={"api_key": key}, headers={**SAME_ORIGIN, **headers}
    )
    return response.status_code, response.headers.get("location", ""), response.text


def set_cookie_header(client: TestClient, key: str = API_KEY) -> str:
    response = client.post("/dashboard/login", data={"api_key": key}, headers=SAME_ORIGIN)
    assert response.status_code == 303
    return response.headers["set-cookie"]


def test_without_a_session_the_dashboard_is_a_login_form(client: TestClient) -> None:
    response = client.get("/dashboard")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<form method="post" action="/dashboard/login">' in response.text
    assert 'name="api_key" type="password"' in response.text
    assert 'http-equiv="refresh"' not in response.text
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("key", ["wrong-key", "", API_KEY + "x"])
def test_a_wrong_key_is_refused_with_the_form_again(client: TestClient, key: str) -> None:
    response = client.post("/dashboard/login", data={"api_key": key}, headers=SAME_ORIGIN)

    assert response.status_code == 403
    assert "That API key is not valid." in response.text
    assert 'action="/dashboard/login"' in response.text
    assert "set-cookie" not in response.headers


def test_the_right_key_sets_a_strict_httponly_expiring_cookie(client: TestClient) -> None:
    response = client.post("/dashboard/login", data={"api_key": API_KEY}, headers=SAME_ORIGIN)

    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"
    cookie = response.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower(): part for part in cookie.split(";")}
    assert cookie.startswith(f"{session.COOKIE}=")
    assert "httponly" in attributes
    assert attributes["samesite"].strip().lower() == "samesite=strict"
    assert attributes["path"].strip() == "Path=/"
    assert attributes["max-age"].strip() == f"Max-Age={session.TTL_SECONDS}"
    assert "expires" in attributes
    assert "secure" not in attributes  # plain http here; see the https test
    assert API_KEY not in cookie


def test_the_cookie_is_secure_over_https(tmp_path: Path, redis_url: str) -> None:
    with make_client(tmp_path, redis_url, base_url="https://testserver") as client:
        response = client.post(
            "/dashboard/login",
            data={"api_key": API_KEY},
            headers={"Origin": "https://testserver"},
        )

    assert response.status_code == 303
    assert "secure" in response.headers["set-cookie"].lower().split("; ")


def test_a_session_opens_the_dashboard(client: TestClient) -> None:
    log_in(client)
    response = client.get("/dashboard")

    assert response.status_code == 200
    for section in ('id="queue"', 'id="workers"', 'id="failed"', 'id="recent"'):
        assert section in response.text
    assert '<meta http-equiv="refresh" content="5; url=/dashboard">' in response.text
    assert client.get("/admin/tasks").status_code == 200


def test_without_redis_no_session_can_be_opened_or_checked(tmp_path: Path) -> None:
    with make_client(tmp_path, NO_REDIS) as client:
        status, _, page = log_in(client)
        client.cookies.clear()
        client.cookies.set(session.COOKIE, session.sign(SESSION_SECRET, "some-session"))
        listing = client.get("/admin/tasks")
        with_key = client.get("/admin/tasks", headers={"X-API-Key": API_KEY})

    assert status == 503
    assert "Redis, which is unreachable" in page
    assert listing.status_code == 503
    # The API key needs no Redis: API clients keep working through an outage.
    assert with_key.status_code == 200


def test_login_from_another_origin_is_refused(client: TestClient) -> None:
    response = client.post(
        "/dashboard/login",
        data={"api_key": API_KEY},
        headers={"Origin": "https://evil.example"},
    )
    no_origin = client.post("/dashboard/login", data={"api_key": API_KEY})

    assert response.status_code == 403
    assert "set-cookie" not in response.headers
    assert no_origin.status_code == 403


def test_no_key_is_ever_taken_from_or_put_in_a_url(client: TestClient) -> None:
    from_query = client.post(f"/dashboard/login?api_key={API_KEY}", headers=SAME_ORIGIN)
    page = client.get(f"/dashboard?api_key={API_KEY}")
    admin = client.get(f"/admin/tasks?api_key={API_KEY}")
    status, location, _ = log_in(client)

    assert from_query.status_code == 415
    assert "set-cookie" not in from_query.headers
    assert 'action="/dashboard/login"' in page.text
    assert admin.status_code == 401
    assert status == 303
    assert API_KEY not in location
    assert API_KEY not in client.get("/dashboard").text


class _Yesterday(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(time.time()) - session.TTL_SECONDS - 1


def test_tampered_expired_and_foreign_cookies_are_rejected(
    client: TestClient, redis_db: redis.Redis
) -> None:
    status, _, _ = log_in(client)
    good = client.cookies[session.COOKIE]
    session_id = session.unsign(SESSION_SECRET, good)
    assert status == 303
    assert session_id is not None
    value, _, signature = good.rpartition(".")
    expired = _Yesterday(SESSION_SECRET, salt="paperboy-dashboard-session").sign(session_id)
    redis_db.set(keys.session_key("never-opened"), b"1")  # open, but its cookie is unsigned
    tokens = {
        "tampered signature": f"{value}.{'A' * len(signature)}",
        "other session id": good.replace(session_id, "never-opened"),
        "expired": expired.decode(),
        "signed with the API key": session.sign(API_KEY, session_id),
        "never opened": session.sign(SESSION_SECRET, "no-such-session"),
        "garbage": "not-a-token",
        "the API key itself": API_KEY,
    }
    client.cookies.clear()
    for name, token in tokens.items():
        client.cookies.set(session.COOKIE, token)
        page = client.get("/dashboard")
        listing = client.get("/admin/tasks")
        retry = client.post("/admin/tasks/x/retry", headers=SAME_ORIGIN)
        assert 'action="/dashboard/login"' in page.text, name
        assert "Your session has expired" in page.text, name
        assert listing.status_code == 401, name
        assert retry.status_code == 401, name

    client.cookies.set(session.COOKIE, good)
    assert client.get("/admin/tasks").status_code == 200


def test_the_cookie_is_not_signed_with_the_api_key(client: TestClient) -> None:
    log_in(client)
    session_id = session.unsign(SESSION_SECRET, client.cookies[session.COOKIE])

    assert session_id is not None
    assert session.unsign(API_KEY, client.cookies[session.COOKIE]) is None


def test_cookie_writes_need_the_same_origin(client: TestClient) -> None:
    log_in(client)

    no_origin = client.post("/admin/tasks/x/retry")
    foreign = client.post("/admin/tasks/x/retry", headers={"Origin": "https://evil.example"})
    null_origin = client.post("/admin/tasks/x/cancel", headers={"Origin": "null"})
    foreign_referer = client.post(
        "/admin/tasks/x/retry", headers={"Referer": "https://evil.example/dashboard"}
    )
    other_port = client.post("/admin/tasks/x/retry", headers={"Origin": f"{ORIGIN}:8080"})
    same = client.post("/admin/tasks/x/retry", headers=SAME_ORIGIN)
    same_referer = client.post("/admin/tasks/x/cancel", headers={"Referer": f"{ORIGIN}/dashboard"})
    behind_tls_proxy = client.post("/admin/tasks/x/retry", headers={"Origin": "https://testserver"})

    for refused in (no_origin, foreign, null_origin, foreign_referer, other_port):
        assert refused.status_code == 403
        assert refused.json() == {"detail": "Cross-origin request refused"}
    for allowed in (same, same_referer, behind_tls_proxy):
        assert allowed.status_code == 404
        assert allowed.json() == {"detail": "Task not found"}


def test_api_key_clients_are_unaffected(client: TestClient) -> None:
    log_in(client)
    with_key = client.post("/admin/tasks/x/retry", headers={"X-API-Key": API_KEY, **BROWSER})
    wrong_key = client.post("/admin/tasks/x/retry", headers={"X-API-Key": "wrong", **BROWSER})
    client.cookies.clear()
    missing = client.post("/admin/tasks/x/retry")

    assert with_key.status_code == 404
    assert with_key.headers["content-type"] == "application/json"
    # A key in a header is judged alone, even next to a valid session.
    assert wrong_key.status_code == 403
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"


def test_a_browser_form_gets_an_html_error_page(client: TestClient) -> None:
    log_in(client)
    response = client.post("/admin/tasks/x%3Cb%3E/retry", headers=BROWSER)

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Task not found" in response.text
    assert 'href="/dashboard"' in response.text


def test_a_dashboard_button_after_logout_gets_an_html_error_page(client: TestClient) -> None:
    log_in(client)
    copied = client.cookies[session.COOKIE]
    client.post("/dashboard/logout", headers=SAME_ORIGIN)
    client.cookies.clear()
    client.cookies.set(session.COOKIE, copied)
    response = client.post("/admin/tasks/x/retry", headers=BROWSER)

    assert response.status_code == 401
    assert response.headers["content-type"].startswith("text/html")
    assert "log in again" in response.text
    assert 'href="/dashboard"' in response.text


def test_logout_clears_the_cookie(client: TestClient) -> None:
    log_in(client)
    foreign = client.post("/dashboard/logout", headers={"Origin": "https://evil.example"})
    response = client.post("/dashboard/logout", headers=SAME_ORIGIN)

    assert foreign.status_code == 403
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"
    assert f'{session.COOKIE}=""' in response.headers["set-cookie"]
    assert "max-age=0" in response.headers["set-cookie"].lower()
    assert 'action="/dashboard/login"' in client.get("/dashboard").text


def test_logout_ends_the_session_on_the_server(client: TestClient) -> None:
    log_in(client)
    copied = client.cookies[session.COOKIE]
    assert client.get("/admin/tasks").status_code == 200

    client.post("/dashboard/logout", headers=SAME_ORIGIN)
    client.cookies.clear()
    client.cookies.set(session.COOKIE, copied)  # the cookie replayed, as a thief would
    listing = client.get("/admin/tasks")
    page = client.get("/dashboard")

    assert listing.status_code == 401
    assert 'action="/dashboard/login"' in page.text


def test_dashboard_buttons_act_and_return_to_the_page(redis_client: TestClient) -> None:
    name = "<script>alert(1)</script>"
    accepted = redis_client.post(
        "/generate-digest",
        json=digest_body(user_info={"name": name, "goals": "<b>graphs</b>"}),
        headers={"X-API-Key": API_KEY},
    )
    task_id = accepted.json()["task_id"]
    log_in(redis_client)

    before = redis_client.get("/dashboard").text
    cancelled = redis_client.post(f"/admin/tasks/{task_id}/cancel", headers=BROWSER)
    after = redis_client.get(cancelled.headers["location"]).text
    retried = redis_client.post(f"/admin/tasks/{task_id}/retry", headers=BROWSER)
    again = redis_client.post(f"/admin/tasks/{task_id}/retry", headers=BROWSER)

    assert accepted.status_code == 202
    assert f'action="/admin/tasks/{task_id}/cancel"' in before
    assert '<div class="label">Queued</div><div class="value">1</div>' in before
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in before
    assert name not in before
    assert cancelled.status_code == 303
    assert cancelled.headers["location"] == f"/dashboard?done=cancel&task={task_id}"
    assert f"Cancel requested for task {task_id}." in after
    assert f'action="/admin/tasks/{task_id}/retry"' in after
    assert retried.status_code == 303
    assert again.status_code == 409
    assert "Only failed or cancelled tasks can be retried" in again.text


SVG = "{http://www.w3.org/2000/svg}"
HOSTILE_EMAIL = '<img src=x onerror=alert(1)>@"><script>alert(2)</script>'
HOSTILE_ERROR = "<script>alert(3)</script> refused"
HOSTILE_STATE = '"><b>bold</b>'


async def _seed(path: Path) -> None:
    store = SqliteBackend(path)
    await store.open()
    try:
        today = midnight(datetime.now(UTC))
        yesterday = today - timedelta(days=1)
        await add_digest(store, "t1", TaskStatus.COMPLETED, today + timedelta(minutes=1), 0.25)
        await add_digest(store, "t2", TaskStatus.COMPLETED, today + timedelta(minutes=2), 0.25)
        await add_digest(store, "t3", TaskStatus.FAILED, today + timedelta(minutes=3), 0.1)
        await add_digest(store, "t4", TaskStatus.COMPLETED, yesterday + timedelta(hours=5), 0.2)
        source_date = f"{yesterday.date()}"
        sent = today + timedelta(minutes=4)
        await add_delivery(store, "ok", "sent", sent, source_date=source_date, sent=sent)
        await add_delivery(
            store, "bad", "failed", sent, source_date=source_date, error=HOSTILE_ERROR
        )
        await add_delivery(
            store, "odd", HOSTILE_STATE, sent, source_date=source_date, email=HOSTILE_EMAIL
        )
    finally:
        await store.close()


def _chart(page: str) -> ET.Element:
    found = re.search(r'<svg id="history-chart".*?</svg>', page, re.DOTALL)
    assert found is not None
    return ET.fromstring(found.group(0))


def test_the_dashboard_draws_the_last_days_and_the_days_deliveries(
    tmp_path: Path, redis_url: str
) -> None:
    asyncio.run(_seed(tmp_path / "api.db"))
    with make_client(tmp_path, redis_url) as client:
        log_in(client)
        response = client.get("/dashboard")
    page = response.text
    svg = _chart(page)
    bars = [rect for rect in svg.iter(f"{SVG}rect") if "day-bar" in rect.get("class", "").split()]
    today = datetime.now(UTC).date()

    assert response.status_code == 200
    assert svg.findtext(f"{SVG}title", "").startswith("Digests, emails and LLM cost per day")
    assert "3 digests completed, 1 failed, 1 emails sent, 1 failed" in svg.findtext(
        f"{SVG}desc", ""
    )
    assert sorted(rect.get("class", "") for rect in bars) == [
        "day-bar digests_completed",
        "day-bar digests_completed",
        "day-bar digests_failed",
        "day-bar emails_failed",
        "day-bar emails_sent",
    ]
    assert all(float(rect.get("height", "0")) > 0 for rect in bars)
    assert all(rect.findtext(f"{SVG}title") for rect in bars)
    assert len(list(svg.iter(f"{SVG}circle"))) == 14 + 1  # a point a day, and the legend's
    assert f"{today}: 2 digests completed" in [rect.findtext(f"{SVG}title") for rect in bars]
    assert (
        f'<tr data-day="{today}"><td>{today}</td><td class="num">2</td><td class="num">1</td>'
        '<td class="num">1</td><td class="num">1</td><td class="num">$0.6000</td></tr>'
    ) in page
    assert f"3: the digests of {today - timedelta(days=1)} and today" in page
    assert '<span class="badge state-failed" data-state="failed">failed: 1</span>' in page
    # Whatever the store holds is text on the page, never markup.
    assert "<script" not in page
    assert "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(3)&lt;/script&gt; refused" in page
    assert "&lt;i\u2026@&#34;&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in page
    assert 'class="badge state-&#34;&gt;&lt;b&gt;bold&lt;/b&gt;"' in page
    assert "ok@" not in page and "ada.lovelace" not in page  # addresses are masked


def test_without_the_deliveries_table_the_dashboard_names_the_problem(
    tmp_path: Path, redis_url: str
) -> None:
    asyncio.run(_seed(tmp_path / "api.db"))
    with make_client(tmp_path, redis_url) as client:
        # As on a live project where the deliveries migration has not run yet.
        drop_deliveries_table(tmp_path / "api.db")
        log_in(client)
        response = client.get("/dashboard")

    assert response.status_code == 200
    assert "The last days could not be read: sqlite: no such table" in response.text
    assert "The history could not be read." in response.text
    assert 'id="recent"' in response.text
    assert 'data-task-id="t4"' in response.text
