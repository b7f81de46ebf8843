"""Leases on a real Redis: held per attempt, judged by Redis time, reaped by one atomic check."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from arq.connections import ArqRedis

from paperboy_worker.lease import Heartbeat, lapsed, reap_one, sighting_grace_ms
from shared import arqstore, keys
from shared.presence import redis_now_ms
from shared.settings import Settings
from tests.support import wait_until_async

pytestmark = pytest.mark.integration

SETTINGS = Settings(lease_seconds=0.3, heartbeat_seconds=0.1)
LEASE_MS = int(SETTINGS.lease_seconds * 1000)
GRACE_MS = sighting_grace_ms(SETTINGS)
TASK = "task-lease"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[ArqRedis]:
    client: ArqRedis = ArqRedis.from_url(redis_url)
    yield client
    await client.aclose()


async def lease_lapsed(redis: ArqRedis) -> bool:
    expires = await redis.zscore(keys.LEASES, TASK)
    return expires is not None and expires <= await redis_now_ms(redis)


async def due(redis: ArqRedis) -> list[str]:
    return await lapsed(redis, lease_ms=LEASE_MS, grace_ms=GRACE_MS)


async def test_an_old_attempts_release_keeps_the_new_attempts_lease(redis: ArqRedis) -> None:
    heartbeat = Heartbeat(redis, SETTINGS, "w1")
    await heartbeat.acquire(TASK, 1)
    await heartbeat.acquire(TASK, 2)

    await heartbeat.release(TASK, 1)
    await heartbeat.beat()

    assert heartbeat.held == {(TASK, 2)}
    assert await redis.get(keys.lease_key(TASK)) == b"w1:2"
    assert await redis.zscore(keys.LEASES, TASK) is not None


async def test_an_attempt_taken_over_elsewhere_stops_renewing(redis: ArqRedis) -> None:
    old, new = Heartbeat(redis, SETTINGS, "w1"), Heartbeat(redis, SETTINGS, "w2")
    await old.acquire(TASK, 1)
    await new.acquire(TASK, 2)

    await old.beat()

    assert old.held == set()
    assert await redis.get(keys.lease_key(TASK)) == b"w2:2"


async def test_losing_one_tasks_lease_keeps_the_others(redis: ArqRedis) -> None:
    old, new = Heartbeat(redis, SETTINGS, "w1"), Heartbeat(redis, SETTINGS, "w2")
    await old.acquire("other-task", 1)
    await old.acquire(TASK, 1)
    await new.acquire(TASK, 2)

    await old.beat()

    assert old.held == {("other-task", 1)}
    assert await redis.get(keys.lease_key("other-task")) == b"w1:1"


async def test_expiry_is_redis_time(redis: ArqRedis) -> None:
    heartbeat = Heartbeat(redis, SETTINGS, "w1")
    before = await redis_now_ms(redis)
    await heartbeat.acquire(TASK, 1)
    after = await redis_now_ms(redis)

    expires = await redis.zscore(keys.LEASES, TASK)
    assert expires is not None
    assert before + LEASE_MS <= expires <= after + LEASE_MS
    assert before <= (await redis.zscore(keys.WORKERS, "w1") or 0) <= after


async def test_a_lease_that_lapsed_while_nobody_could_look_is_not_reaped_at_once(
    redis: ArqRedis,
) -> None:
    """A Redis stall: the lease lapses while no reaper (and no heartbeat) gets through."""
    heartbeat = Heartbeat(redis, SETTINGS, "w1")
    await heartbeat.acquire(TASK, 1)
    await wait_until_async(lambda: lease_lapsed(redis), within=10)

    assert await due(redis) == []  # sighted now; the holder gets a heartbeat to renew
    await heartbeat.beat()
    sighted_at = await redis_now_ms(redis)
    await wait_until_async(lambda: _later(redis, sighted_at + GRACE_MS), within=10)

    assert await due(redis) == []  # the renewal cleared the old sighting; this one is new
    assert int(await redis.hget(keys.LEASE_SIGHTINGS, TASK) or 0) >= sighted_at


async def test_a_lease_nobody_renews_is_reaped_after_the_grace(redis: ArqRedis) -> None:
    heartbeat = Heartbeat(redis, SETTINGS, "w1")
    await heartbeat.acquire(TASK, 1)

    async def reapable() -> bool:
        return await due(redis) == [TASK]

    await wait_until_async(reapable, within=10)
    assert not await reap_one(redis, TASK, grace_ms=GRACE_MS, requeue=False)  # no job to free
    assert await redis.zscore(keys.LEASES, TASK) is None
    assert not await redis.exists(keys.lease_key(TASK))


async def test_the_reap_checks_again_and_spares_a_lease_renewed_since(redis: ArqRedis) -> None:
    heartbeat = Heartbeat(redis, SETTINGS, "w1")
    await heartbeat.acquire(TASK, 1)
    await redis.set(arqstore.in_progress_key(TASK), b"1")

    async def reapable() -> bool:
        return await due(redis) == [TASK]

    await wait_until_async(reapable, within=10)
    await heartbeat.beat()  # the holder renews between the sweep and the reap

    assert not await reap_one(redis, TASK, grace_ms=GRACE_MS, requeue=True)
    assert await redis.exists(arqstore.in_progress_key(TASK))
    assert await redis.get(keys.lease_key(TASK)) == b"w1:1"


async def test_a_reaped_job_is_runnable_again_under_its_own_id(redis: ArqRedis) -> None:
    heartbeat = Heartbeat(redis, SETTINGS, "w1")
    await heartbeat.acquire(TASK, 1)
    await redis.set(arqstore.in_progress_key(TASK), b"1")
    await redis.set(arqstore.job_key(TASK), b"{}")

    async def reapable() -> bool:
        return await due(redis) == [TASK]

    await wait_until_async(reapable, within=10)

    assert await reap_one(redis, TASK, grace_ms=GRACE_MS, requeue=True)
    assert not await redis.exists(arqstore.in_progress_key(TASK))
    assert await redis.zscore(keys.QUEUE, TASK) is not None
    assert not await redis.exists(keys.lease_key(TASK))


async def _later(redis: ArqRedis, when_ms: int) -> bool:
    return await redis_now_ms(redis) >= when_ms
