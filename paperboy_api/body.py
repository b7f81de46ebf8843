"""Reading a JSON body within bounds: 415 if it is not JSON, 413 if it is too large."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from paperboy_api.errors import ApiError

MAX_BODY_BYTES = 64 * 1024


async def read_json(request: Request, limit: int = MAX_BODY_BYTES) -> dict[str, Any]:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(415, "Content-Type must be application/json")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"Body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # counted as read: chunked bodies declare no length
            raise ApiError(413, f"Body is larger than {limit} bytes")
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"Body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(
            422, [{"loc": ["body"], "msg": "Body must be a JSON object", "type": "object_type"}]
        )
    return body
