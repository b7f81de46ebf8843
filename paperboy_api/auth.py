"""API-key authentication: `X-API-Key: <key>` or `Authorization: Bearer <key>`."""

from __future__ import annotations

import hmac

from starlette.requests import Request

from paperboy_api.errors import ApiError
from paperboy_api.state import app_state


def presented_key(request: Request) -> str | None:
    if key := request.headers.get("x-api-key"):
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def key_matches(presented: str, expected: str) -> bool:
    return hmac.compare_digest(presented.encode(), expected.encode())


def require_api_key(request: Request) -> None:
    """401 when no key is presented, 403 when it is wrong."""
    key = presented_key(request)
    if key is None:
        raise ApiError(
            401,
            "Missing API key: send X-API-Key or Authorization: Bearer",
            headers={"WWW-Authenticate": "Bearer"},
        )
    expected = app_state(request)["settings"].api_key.get_secret_value()
    if not key_matches(key, expected):
        raise ApiError(403, "Invalid API key")
