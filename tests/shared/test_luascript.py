"""Scripts go to Redis by hash, and survive the server forgetting them (restart, SCRIPT FLUSH)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from shared.luascript import LuaScript
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration

INCR_BY = LuaScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")


@pytest.fixture
async def redis(private_redis: RedisServer) -> AsyncIterator[Redis]:
    # A Redis of this test's own: it counts commands and flushes the script cache.
    client = Redis.from_url(private_redis.url)
    yield client
    await client.aclose()


async def calls(redis: Redis, command: str) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_a_script_is_sent_in_full_once_then_by_hash(redis: Redis) -> None:
    for _ in range(3):
        await INCR_BY(redis, ["n"], [2])

    assert await redis.get("n") == b"6"
    assert await calls(redis, "eval") == 1  # the first call met NOSCRIPT
    assert await calls(redis, "evalsha") == 3


async def test_a_script_the_server_forgot_is_sent_again(redis: Redis) -> None:
    await INCR_BY(redis, ["n"], [1])
    await redis.script_flush()

    assert await INCR_BY(redis, ["n"], [1]) == 2
    assert await redis.script_exists(INCR_BY.sha) == [True]
