"""Reading a JSON body within bounds: 415 if it is not JSON, 413 if it is too large, 400 if it
does not parse or nests too deeply, 422 naming the field that holds text no store can keep."""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request

from paperboy_api.errors import ApiError

MAX_BODY_BYTES = 64 * 1024
# Our bodies nest three levels; anything far deeper is hostile, and Python's JSON parser and
# encoder recurse, so a body thousands of levels deep would otherwise end in RecursionError.
MAX_DEPTH = 32

# PostgreSQL text cannot hold NUL, and a lone UTF-16 surrogate (which JSON's \ud800 escape
# yields) cannot be encoded as UTF-8 at all: either would be accepted, then never stored.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

Path = tuple[str | int, ...]


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
    body = _parse(b"".join(chunks))
    if not isinstance(body, dict):
        raise ApiError(
            422, [{"loc": ["body"], "msg": "Body must be a JSON object", "type": "object_type"}]
        )
    return body


def _parse(raw: bytes) -> Any:
    if _depth_exceeds(raw, MAX_DEPTH):
        raise ApiError(400, f"Body is not valid JSON: nested deeper than {MAX_DEPTH} levels")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"Body is not valid JSON: {exc}") from exc
    where = _first_unstorable(body)
    if where is not None:
        raise ApiError(
            422,
            [
                {
                    "loc": ["body", *where],
                    "msg": "must not contain NUL (\\u0000) or lone surrogate characters",
                    "type": "string_unstorable",
                }
            ],
        )
    return body


def _depth_exceeds(raw: bytes, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than `limit`, counted before parsing."""
    depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in b"[{":
            depth += 1
            if depth > limit:
                return True
        elif byte in b"]}":
            depth -= 1
    return False


def _first_unstorable(body: Any) -> Path | None:
    """The path of the first key or string that holds an UNSTORABLE character."""
    pending: list[tuple[Path, Any]] = [((), body)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, str) and UNSTORABLE.search(value):
            return path
        if isinstance(value, dict):
            for key, item in value.items():
                if UNSTORABLE.search(key):
                    return (*path, UNSTORABLE.sub("?", key))
                pending.append(((*path, key), item))
        elif isinstance(value, list):
            pending.extend(((*path, index), item) for index, item in enumerate(value))
    return None
