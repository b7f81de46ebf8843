"""The dashboard's sessions: a random id kept in Redis, sent as a signed, expiring cookie.

The session is open while its Redis key exists: logging out deletes it, so a copied cookie is
useless afterwards. The cookie is signed with `SESSION_SECRET` (never the API key), so a forged
or altered one is refused before Redis is asked.
"""

from __future__ import annotations

import secrets

from itsdangerous import BadSignature, TimestampSigner
from redis.asyncio import Redis
from starlette.requests import HTTPConnection
from starlette.responses import Response

from paperboy_api.state import app_state
from shared import keys

COOKIE = "paperboy_session"
TTL_SECONDS = 12 * 3600
_SALT = "paperboy-dashboard-session"


def _signer(secret: str) -> TimestampSigner:
    return TimestampSigner(secret, salt=_SALT)


def sign(secret: str, session_id: str) -> str:
    return _signer(secret).sign(session_id).decode()


def unsign(secret: str, token: str) -> str | None:
    """The session id in a cookie signed with `secret` within the last `TTL_SECONDS`, else None."""
    try:
        return _signer(secret).unsign(token, max_age=TTL_SECONDS).decode()
    except BadSignature:  # also an expired signature
        return None


async def open_session(redis: Redis, secret: str) -> str:
    """Record a new session and return its cookie value."""
    session_id = secrets.token_urlsafe(32)
    await redis.set(keys.session_key(session_id), b"1", ex=TTL_SECONDS)
    return sign(secret, session_id)


async def current(conn: HTTPConnection) -> str | None:
    """The id of the open session this request's cookie names, if any (Redis errors propagate)."""
    token = conn.cookies.get(COOKIE)
    state = app_state(conn)
    session_id = unsign(state["settings"].session_secret.get_secret_value(), token or "")
    if session_id is None or not await state["redis"].exists(keys.session_key(session_id)):
        return None
    return session_id


async def close(conn: HTTPConnection) -> None:
    """End the cookie's session on the server; a cookie that names none is left as it is."""
    state = app_state(conn)
    secret = state["settings"].session_secret.get_secret_value()
    session_id = unsign(secret, conn.cookies.get(COOKIE) or "")
    if session_id is not None:
        await state["redis"].delete(keys.session_key(session_id))


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
