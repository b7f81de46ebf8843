"""The worker's poll loop outlives Redis connection errors; pinned to the installed arq."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from arq import func
from arq.connections import ArqRedis
from redis.exceptions import ConnectionError as RedisConnectionError

from paperboy_worker.poller import BACKOFF_CAP_SECONDS, PaperboyWorker, backoff_seconds
from shared import keys
from tests.conftest import RedisServer

pytestmark = pytest.mark.integration

MAX_JOBS = 2


async def noop(ctx: dict[str, object]) -> None:
    return None


@pytest.fixture
async def pool(private_redis: RedisServer) -> AsyncIterator[ArqRedis]:
    client: ArqRedis = ArqRedis.from_url(private_redis.url, socket_connect_timeout=1)
    yield client
    await client.aclose()


def worker_on(pool: ArqRedis) -> PaperboyWorker:
    return PaperboyWorker(
        functions=[func(noop, name="noop")],
        redis_pool=pool,
        queue_name=keys.QUEUE,
        max_jobs=MAX_JOBS,
        handle_signals=False,
    )


async def test_a_poll_without_redis_is_retried_and_recovers(
    private_redis: RedisServer, pool: ArqRedis
) -> None:
    worker = worker_on(pool)
    private_redis.stop()

    await worker._poll_iteration()
    await worker._poll_iteration()
    assert worker.failed_polls == 2

    private_redis.start()
    await worker._poll_iteration()
    assert worker.failed_polls == 0


async def test_a_claim_that_fails_on_the_connection_gives_its_slot_back(
    private_redis: RedisServer, pool: ArqRedis
) -> None:
    worker = worker_on(pool)
    free_slots = worker.sem._value
    private_redis.stop()

    with pytest.raises(RedisConnectionError):
        await worker.start_jobs([b"some-job"])

    # What arq took for the job it was claiming is free again.
    assert worker.job_counter == 0
    assert worker.sem._value == free_slots


def test_back_off_doubles_and_is_bounded() -> None:
    delays = [backoff_seconds(n) for n in range(1, 12)]
    assert delays[:3] == [0.1, 0.2, 0.4]
    assert delays == sorted(delays)
    assert max(delays) == BACKOFF_CAP_SECONDS
