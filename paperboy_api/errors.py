"""How the API reports errors: always `{"detail": ...}` in JSON."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shared.errors import StoreError

log = logging.getLogger("paperboy.api")

RETRY_AFTER = {"Retry-After": "5"}


class ApiError(HTTPException):
    """An error answered with its status code and a JSON `detail`."""

    def __init__(
        self, status_code: int, detail: Any, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status_code, headers=headers)
        self.body = detail


def field_errors(exc: ValidationError, prefix: tuple[str, ...] = ("body",)) -> list[dict[str, Any]]:
    return [
        {"loc": [*prefix, *error["loc"]], "msg": error["msg"], "type": error["type"]}
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.body if isinstance(exc, ApiError) else exc.detail
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)


async def store_unavailable(request: Request, exc: Exception) -> Response:
    """Any handler's store failure: a prompt JSON 503 the client may retry, not a text 500.

    The store's own message stays in the log: it names hosts and tables.
    """
    assert isinstance(exc, StoreError)
    log.warning("store unavailable: %s", exc.message, extra={"path": request.url.path})
    return JSONResponse(
        {"detail": "The state store is unavailable; retry shortly"},
        status_code=503,
        headers=RETRY_AFTER,
    )
