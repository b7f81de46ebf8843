"""Which workers are alive: each announces itself with every heartbeat."""

from __future__ import annotations

import json
import time
from typing import Any

from redis.asyncio import Redis

from shared import keys


def now_ms() -> int:
    return int(time.time() * 1000)


async def live_workers(redis: Redis, lease_seconds: float) -> list[dict[str, Any]]:
    """The workers whose last heartbeat is younger than a lease."""
    since = now_ms() - int(lease_seconds * 1000)
    ids = await redis.zrangebyscore(keys.WORKERS, since, "+inf")
    if not ids:
        return []
    raw = await redis.mget([keys.worker_key(i.decode()) for i in ids])
    return [json.loads(r) for r in raw if r]
