"""The operator dashboard: a login form, one server-rendered page, and its buttons.

The buttons are plain HTML forms that POST to the admin API with the session cookie; `browser_form`
turns the admin API's answer into a redirect back here (or an error page) for those forms only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from redis.exceptions import RedisError
from starlette.authentication import AuthenticationError
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from paperboy_api import auth, chart, history, session
from paperboy_api.auth import Refused, check_key, presented_key, same_origin
from paperboy_api.digests import TASK_ID
from paperboy_api.errors import ApiError
from paperboy_api.state import AppState, app_state
from paperboy_api.throttle import client_address
from shared import queue
from shared.errors import StoreError, StoreRejectedError
from shared.models import DigestTask, TaskStatus, utcnow
from shared.presence import live_workers

log = logging.getLogger("paperboy.api")

PATH = "/dashboard"
RECENT = 50
FAILED = 50
REFRESH_SECONDS = 5
FORM_LIMIT = 4096
NOTICES = {"retry": "Retry requested for task", "cancel": "Cancel requested for task"}
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}

Endpoint = Callable[[Request], Awaitable[Response]]


def _ago(epoch_seconds: float) -> str:
    return f"{_duration(time.time() - epoch_seconds)} ago"


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60}m"


def _moment(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value else ""


def _user(task: DigestTask) -> str:
    user = task.request.get("user_info")
    name = user.get("name") if isinstance(user, dict) else None
    return str(task.user_id or name or "")


_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters.update(
    ago=_ago,
    duration=_duration,
    moment=_moment,
    user=_user,
    path_segment=lambda value: quote(str(value), safe=""),
)


def _page(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = _ENV.get_template(template).render(refresh=REFRESH_SECONDS, path=PATH, **context)
    return HTMLResponse(html, status_code=status_code, headers=HEADERS)


def _login_page(status_code: int = 200, message: str | None = None) -> HTMLResponse:
    return _page("login.html", status_code, message=message)


async def dashboard(request: Request) -> Response:
    try:
        open_session = await session.current(request)
    except RedisError:
        return _login_page(503, "Sessions are kept in Redis, which is unreachable.")
    if open_session is None:
        expired = session.COOKIE in request.cookies
        return _login_page(message="Your session has expired; log in again." if expired else None)
    now = utcnow()
    snapshot = await _snapshot(app_state(request))
    past = await _history(app_state(request), now, snapshot["problems"])
    return _page(
        "dashboard.html",
        notice=_notice(request),
        now=now,
        failed_limit=FAILED,
        history=past,
        chart=chart.build(past.days) if past else None,
        **snapshot,
    )


async def _history(state: AppState, now: datetime, problems: list[str]) -> history.History | None:
    # A refusal counts too: until the deliveries table is migrated, the store says it is missing.
    try:
        past = await history.load(state["backend"], now)
    except (StoreError, StoreRejectedError) as exc:
        problems.append(f"The last days could not be read: {exc.message}")
        return None
    if past.truncated:
        problems.append(
            f"The last days hold more rows than the dashboard reads ({history.MAX_PAGES} pages "
            f"of {history.PAGE} a table): the chart and deliveries count only the earliest."
        )
    return past


async def _snapshot(state: AppState) -> dict[str, Any]:
    """Everything the page shows; a backend that does not answer is named, not fatal."""
    problems: list[str] = []
    summary: dict[str, Any] | None = None
    workers: list[dict[str, Any]] = []
    recent: list[DigestTask] = []
    failed: list[DigestTask] = []
    try:
        summary = await queue.queue_summary(state["redis"])
        workers = await live_workers(state["redis"], state["settings"].lease_seconds)
    except RedisError as exc:
        problems.append(
            f"Redis is unreachable ({exc.__class__.__name__}): queue and workers unknown."
        )
    try:
        recent = await state["tasks"].page(None, None, RECENT)
        failed = await state["tasks"].page(TaskStatus.FAILED, None, FAILED)
    except StoreError as exc:
        problems.append(f"The state store is unreachable: {exc.message}")
    return {
        "summary": summary,
        "workers": workers,
        "recent": recent,
        "failed": failed,
        "problems": problems,
    }


def _notice(request: Request) -> str | None:
    prefix = NOTICES.get(request.query_params.get("done", ""))
    task_id = request.query_params.get("task", "")
    return f"{prefix} {task_id}." if prefix and TASK_ID.fullmatch(task_id) else None


async def login(request: Request) -> Response:
    """The login form's POST: the API key, form-encoded, in the body (never in the URL)."""
    if not same_origin(request):
        return _login_page(403, "Log in from the dashboard's own page.")
    try:
        form = await _read_form(request)
        await check_key(request, form.get("api_key", ""))
        token = await session.open_session(
            app_state(request)["redis"],
            app_state(request)["settings"].session_secret.get_secret_value(),
        )
    except (ApiError, Refused) as exc:
        return _refused_login(request, exc)
    except RedisError:
        return _login_page(503, "Sessions are kept in Redis, which is unreachable.")
    response = RedirectResponse(PATH, status_code=303)
    secure = request.url.scheme == "https" or request.headers.get("origin", "").startswith(
        "https://"
    )
    session.set_cookie(response, token, secure=secure)
    log.info("dashboard login", extra={"client": _client(request)})
    return response


def _refused_login(request: Request, exc: ApiError | Refused) -> HTMLResponse:
    if isinstance(exc, ApiError):
        return _login_page(exc.status_code, str(exc.body))
    log.warning("dashboard login refused", extra={"client": _client(request)})
    message = "That API key is not valid." if exc.status_code == 403 else exc.detail
    page = _login_page(exc.status_code, message)
    page.headers.update(exc.headers)
    return page


async def logout(request: Request) -> Response:
    """Ends the session on the server, so the cookie is worthless even if it was copied."""
    if not same_origin(request):
        return _page("error.html", 403, status=403, message="Cross-origin request refused")
    try:
        await session.close(request)
    except RedisError:
        return _page("error.html", 503, status=503, message="Redis is unreachable; try again")
    response = RedirectResponse(PATH, status_code=303)
    session.clear_cookie(response)
    return response


def _client(request: Request) -> str:
    return client_address(request, app_state(request)["settings"])


async def _read_form(request: Request) -> dict[str, str]:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise ApiError(415, "The form must be sent as application/x-www-form-urlencoded.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            raise ApiError(413, "The form is too large.")
    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=10))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "The form could not be read.") from exc


def browser_form(endpoint: Endpoint, action: str) -> Endpoint:
    """`endpoint` as before for API clients; for a dashboard button (session cookie, no key, a
    browser that accepts HTML), a 303 back to the dashboard, or an HTML page naming the error."""

    async def handle(request: Request) -> Response:
        if not _from_dashboard(request):
            return await endpoint(request)
        try:
            response = await endpoint(request)
        except ApiError as exc:
            return _page("error.html", exc.status_code, status=exc.status_code, message=exc.body)
        if response.status_code >= 400:
            return response
        done = urlencode({"done": action, "task": request.path_params.get("task_id", "")})
        return RedirectResponse(f"{PATH}?{done}", status_code=303)

    return handle


def refused(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    """The authentication middleware's answer: an error page for a dashboard button, else JSON."""
    if _from_dashboard(conn) and isinstance(exc, Refused):
        return _page("error.html", exc.status_code, status=exc.status_code, message=exc.detail)
    return auth.refused(conn, exc)


def _from_dashboard(conn: HTTPConnection) -> bool:
    return (
        presented_key(conn) is None
        and session.COOKIE in conn.cookies
        and "text/html" in conn.headers.get("accept", "")
    )
