"""Which workers are alive: each announces itself with every heartbeat."""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from shared import keys


async def redis_now_ms(redis: Redis) -> int:
    """Redis server time: the one clock every process agrees on."""
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def live_workers(redis: Redis, lease_seconds: float) -> list[dict[str, Any]]:
    """The workers whose last heartbeat (Redis time) is younger than a lease."""
    since = await redis_now_ms(redis) - int(lease_seconds * 1000)
    ids = await redis.zrangebyscore(keys.WORKERS, since, "+inf")
    if not ids:
        return []
    raw = await redis.mget([keys.worker_key(i.decode()) for i in ids])
    return [json.loads(r) for r in raw if r]
