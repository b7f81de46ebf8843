"""Whether the news source keeps failing, as every worker sees it, for `/ready` and `/metrics`.

A news failure does not fail a digest (its papers still make one), so without this record a
broken key or base URL only shows as `degraded` digests. Workers count consecutive failed
fetches in one Redis hash; a success clears it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared import keys
from shared.models import stamp

log = logging.getLogger("paperboy.news")


@dataclass(frozen=True)
class NewsHealth:
    failures: int = 0
    last_error: str | None = None
    since: str | None = None


async def record_success(redis: Redis) -> None:
    try:
        await redis.delete(keys.NEWS_HEALTH)
    except RedisError as exc:
        log.warning("news health not recorded: %r", exc)


async def record_failure(redis: Redis, error_code: str) -> None:
    try:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(keys.NEWS_HEALTH, "failures", 1)
            pipe.hset(keys.NEWS_HEALTH, "last_error", error_code)
            pipe.hsetnx(keys.NEWS_HEALTH, "since", stamp())
            await pipe.execute()
    except RedisError as exc:
        log.warning("news health not recorded: %r", exc)


async def news_health(redis: Redis) -> NewsHealth:
    """The shared record; raises `RedisError` like any other read the caller makes."""
    raw = await redis.hgetall(keys.NEWS_HEALTH)  # type: ignore[misc]
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    return NewsHealth(
        failures=int(fields.get("failures", 0)),
        last_error=fields.get("last_error"),
        since=fields.get("since"),
    )
