"""Authentication: the API key (`X-API-Key: <key>` or `Authorization: Bearer <key>`), or the
dashboard's session cookie, which writes (POST, DELETE, ...) only from a same-origin page."""

from __future__ import annotations

import hmac
from enum import StrEnum
from urllib.parse import urlsplit

from starlette.requests import Request

from paperboy_api import session
from paperboy_api.errors import ApiError
from paperboy_api.state import app_state

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Caller(StrEnum):
    """How a request proved who it is."""

    API_KEY = "api_key"
    SESSION = "session"


def presented_key(request: Request) -> str | None:
    if key := request.headers.get("x-api-key"):
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def key_matches(presented: str, expected: str) -> bool:
    return hmac.compare_digest(presented.encode(), expected.encode())


def require_api_key(request: Request) -> Caller:
    """A key in a header is judged alone: 401 when none is presented, 403 when it is wrong.
    Without one, a valid session cookie passes; on a write it also needs a same-origin `Origin`
    (or `Referer`), else 403. A missing, tampered or expired cookie is 401."""
    key = presented_key(request)
    if key is None:
        return _require_session(request)
    expected = app_state(request)["settings"].api_key.get_secret_value()
    if not key_matches(key, expected):
        raise ApiError(403, "Invalid API key")
    return Caller.API_KEY


def _require_session(request: Request) -> Caller:
    if session.COOKIE not in request.cookies:
        raise ApiError(
            401,
            "Missing API key: send X-API-Key or Authorization: Bearer",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not session.has_valid_session(request):
        raise ApiError(401, "The dashboard session is invalid or has expired; log in again")
    if request.method not in SAFE_METHODS and not same_origin(request):
        raise ApiError(403, "Cross-origin request refused")
    return Caller.SESSION


def same_origin(request: Request) -> bool:
    """The page that sent this request is served by this host: its `Origin` (or, without one,
    its `Referer`'s origin) is ours. `https://` with our host also counts, for TLS ended by a
    proxy in front of us."""
    claimed = request.headers.get("origin") or _origin_of(request.headers.get("referer"))
    if not claimed:
        return False
    netloc = request.url.netloc.lower()
    return claimed.lower() in {f"{request.url.scheme}://{netloc}", f"https://{netloc}"}


def _origin_of(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None
