"""Authentication, for every route but health and the dashboard's own pages: Starlette's
`AuthenticationMiddleware` with this backend, in front of the protected routes (see app.py).

A caller proves itself with the API key (`X-API-Key: <key>` or `Authorization: Bearer <key>`),
or with the dashboard's session cookie, which writes (POST, DELETE, ...) only from a
same-origin page. Every refusal is a `Refused`; `refused` turns it into the JSON answer.
"""

from __future__ import annotations

import hmac
from enum import StrEnum
from urllib.parse import urlsplit

from redis.exceptions import RedisError
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    SimpleUser,
)
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response

from paperboy_api import session
from paperboy_api.state import app_state
from paperboy_api.throttle import Throttle

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Caller(StrEnum):
    """How a request proved who it is: its only scope in `request.auth.scopes`."""

    API_KEY = "api_key"
    SESSION = "session"


class Refused(AuthenticationError):
    """A request the API will not serve, and how to answer it."""

    def __init__(self, status_code: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.headers = headers or {}


def presented_key(conn: HTTPConnection) -> str | None:
    if key := conn.headers.get("x-api-key"):
        return key
    scheme, _, token = conn.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def key_matches(presented: str, expected: str) -> bool:
    return hmac.compare_digest(presented.encode(), expected.encode())


async def check_key(conn: HTTPConnection, presented: str) -> None:
    """Refuse a throttled address (429) or a wrong key (403, and counted against the address).
    The throttle is asked first, so a blocked address cannot keep guessing."""
    throttle = Throttle.of(conn)
    if (wait := await throttle.retry_after()) is not None:
        raise Refused(429, "Too many failed attempts; retry later", {"Retry-After": str(wait)})
    if not key_matches(presented, app_state(conn)["settings"].api_key.get_secret_value()):
        await throttle.failed()
        raise Refused(403, "Invalid API key")


class ApiAuth(AuthenticationBackend):
    """A key in a header is judged alone: 401 when none is presented, 403 when it is wrong.
    Without one, an open session passes; on a write it also needs a same-origin `Origin`
    (or `Referer`), else 403. A missing, tampered, expired or logged-out cookie is 401."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser]:
        key = presented_key(conn)
        if key is None:
            return await _session(conn)
        await check_key(conn, key)
        return AuthCredentials([Caller.API_KEY]), SimpleUser(Caller.API_KEY)


async def _session(conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser]:
    if session.COOKIE not in conn.cookies:
        raise Refused(
            401,
            "Missing API key: send X-API-Key or Authorization: Bearer",
            {"WWW-Authenticate": "Bearer"},
        )
    try:
        session_id = await session.current(conn)
    except RedisError as exc:
        raise Refused(503, "Sessions cannot be checked: Redis is unreachable") from exc
    if session_id is None:
        raise Refused(401, "The dashboard session is invalid or has expired; log in again")
    if conn.scope["method"] not in SAFE_METHODS and not same_origin(conn):
        raise Refused(403, "Cross-origin request refused")
    return AuthCredentials([Caller.SESSION]), SimpleUser(Caller.SESSION)


def refused(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    if not isinstance(exc, Refused):
        exc = Refused(401, str(exc))
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def same_origin(conn: HTTPConnection) -> bool:
    """The page that sent this request is served by this host: its `Origin` (or, without one,
    its `Referer`'s origin) is ours. `https://` with our host also counts, for TLS ended by a
    proxy in front of us."""
    claimed = conn.headers.get("origin") or _origin_of(conn.headers.get("referer"))
    if not claimed:
        return False
    netloc = conn.url.netloc.lower()
    return claimed.lower() in {f"{conn.url.scheme}://{netloc}", f"https://{netloc}"}


def _origin_of(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None
