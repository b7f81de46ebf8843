"""The dashboard's session cookie: `<expires>.<nonce>.<signature>`, HMAC-SHA256 signed, expiring.

Stateless: nothing is stored server-side, so logging out only clears the browser's cookie; rotating
the API key ends every session at once, because the signing key is derived from it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from starlette.requests import Request
from starlette.responses import Response

from paperboy_api.state import app_state

COOKIE = "paperboy_session"
TTL_SECONDS = 12 * 3600
_PURPOSE = b"paperboy-dashboard-session"


def signing_key(api_key: str) -> bytes:
    """A key for sessions only: a cookie never carries, or reveals, the API key itself."""
    return hmac.new(api_key.encode(), _PURPOSE, hashlib.sha256).digest()


def _signature(key: bytes, payload: str) -> str:
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()


def issue(key: bytes, now: float | None = None, ttl: int = TTL_SECONDS) -> str:
    expires = int(now if now is not None else time.time()) + ttl
    payload = f"{expires}.{secrets.token_urlsafe(16)}"
    return f"{payload}.{_signature(key, payload)}"


def verify(key: bytes, token: str, now: float | None = None) -> bool:
    """True for a token signed with `key` whose expiry is still ahead."""
    payload, _, signature = token.rpartition(".")
    expires, _, nonce = payload.partition(".")
    if not (expires.isdigit() and nonce and signature):
        return False
    if not hmac.compare_digest(signature.encode(), _signature(key, payload).encode()):
        return False
    return int(expires) > (now if now is not None else time.time())


def request_key(request: Request) -> bytes:
    return signing_key(app_state(request)["settings"].api_key.get_secret_value())


def has_valid_session(request: Request) -> bool:
    token = request.cookies.get(COOKIE)
    return bool(token) and verify(request_key(request), token or "")


def set_cookie(response: Response, token: str, *, secure: bool) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=TTL_SECONDS,
        expires=TTL_SECONDS,
        path="/",
        secure=secure,
        httponly=True,
        samesite="strict",
    )


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
