"""Checkpoints keep paid steps across attempts; losing Redis costs money, never the attempt."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from paperboy_worker.pipeline.checkpoints import TTL_SECONDS, Checkpoints
from shared import keys
from tests.support import free_port


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_saved_steps_are_loaded_by_the_next_attempt(redis: Redis) -> None:
    await Checkpoints(redis, "t-1").save("rank:papers", {"value": [1, 2], "degraded": False})
    await Checkpoints(redis, "t-1").save("highlights", {"value": ["h"], "degraded": True})

    loaded = await Checkpoints(redis, "t-1").load()

    assert loaded == {
        "rank:papers": {"value": [1, 2], "degraded": False},
        "highlights": {"value": ["h"], "degraded": True},
    }
    assert 0 < await redis.ttl(keys.checkpoint_key("t-1")) <= TTL_SECONDS
    assert await Checkpoints(redis, "t-other").load() == {}


async def test_an_unreachable_redis_loads_nothing_and_saves_quietly() -> None:
    client = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    checkpoints = Checkpoints(client, "t-1")
    try:
        await checkpoints.save("rank:papers", {"value": [], "degraded": False})
        assert await checkpoints.load() == {}
    finally:
        await client.aclose()
