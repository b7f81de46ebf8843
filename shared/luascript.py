"""A Lua script sent to Redis by its SHA1 digest, not its source, on every call but the first."""

from __future__ import annotations

import hashlib
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError


class LuaScript:
    """One script for any client: redis-py's `register_script` binds a script to one client,
    while these are called with whichever client the caller holds (the API's, a worker's pool).

    The server forgets its script cache on restart or `SCRIPT FLUSH`; NOSCRIPT is then answered
    by sending the source once, which caches it again.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, redis: Redis, keys: list[str], args: list[Any]) -> Any:
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)  # type: ignore[misc]
        except NoScriptError:
            return await redis.eval(self.source, len(keys), *keys, *args)  # type: ignore[misc]
