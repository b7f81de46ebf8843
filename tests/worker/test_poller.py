"""The worker's poll loop outlives Redis connection errors (the arq hooks it relies on are pinned
in tests/shared/test_arq_contract.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from arq import func
from arq.connections import ArqRedis
from redis.exceptions import ConnectionError as RedisConnectionError

from paperboy_worker.poller import BACKOFF_CAP_SECONDS, PaperboyWorker, backoff_seconds
from shared import keys
from tests.redis_server import RedisServer
from tests.support import REDIS_DB, REDIS_HOST, REDIS_PORT, wait_until_async

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


class DroppingProxy:
    """A TCP proxy in front of Redis that, once armed, cuts the connection that just sent WATCH
    as soon as Redis has answered it: the claim's next command meets a dead connection."""

    def __init__(self) -> None:
        self.armed = False
        self.server: asyncio.Server | None = None
        self.port = 0
        self.handlers: set[asyncio.Task[object]] = set()

    async def __aenter__(self) -> DroppingProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        await asyncio.gather(*self.handlers)  # their clients have closed

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self.handlers.add(handler)
        redis_r, redis_w = await asyncio.open_connection(REDIS_HOST, REDIS_PORT)
        try:
            while request := await client_r.read(65536):
                redis_w.write(request)
                reply = await redis_r.read(65536)
                if self.armed and b"\r\nWATCH\r\n" in request:
                    self.armed = False
                    client_w.write(reply)
                    await client_w.drain()
                    break
                client_w.write(reply)
                await client_w.drain()
        finally:
            redis_w.close()
            client_w.close()


async def test_a_connection_lost_under_watch_costs_one_poll_not_the_worker(
    redis_url: str,
) -> None:
    ran: list[str] = []

    async def record(ctx: dict[str, object], name: str) -> None:
        ran.append(name)

    async with DroppingProxy() as proxy:
        pool: ArqRedis = ArqRedis.from_url(f"redis://127.0.0.1:{proxy.port}/{REDIS_DB}")
        try:
            worker = PaperboyWorker(
                functions=[func(record, name="record")],
                redis_pool=pool,
                queue_name=keys.QUEUE,
                max_jobs=1,
                handle_signals=False,
                keep_result=0,
            )
            job_id = uuid.uuid4().hex
            await pool.enqueue_job("record", job_id, _job_id=job_id, _queue_name=keys.QUEUE)
            proxy.armed = True

            await worker._poll_iteration()  # arq alone raises WatchError out of start_jobs here
            assert worker.failed_polls == 1
            while not ran:  # the claim is retried, in the one slot there is
                await worker._poll_iteration()
                await asyncio.gather(*worker.tasks.values())
        finally:
            await pool.aclose()

    assert ran == [job_id]


async def test_redis_lost_while_blocked_on_the_wake_list_costs_a_poll_not_the_worker(
    private_redis: RedisServer, pool: ArqRedis
) -> None:
    worker = worker_on(pool)
    await worker._poll_iteration()  # the first poll looks at the queue; the next one blocks
    blocked = asyncio.create_task(worker._poll_iteration())
    await wait_until_async(lambda: _blocked_once(worker), within=5)
    private_redis.stop()

    await asyncio.wait_for(blocked, timeout=10)  # the block ended in an error, caught
    assert worker.failed_polls == 1

    private_redis.start()
    await wait_until_async(lambda: _recovered(worker), within=10)
    worker._pool = None  # the pool is the fixture's to close; this closes the wake connection
    await worker.close()


async def _blocked_once(worker: PaperboyWorker) -> bool:
    return worker._blocked is not None


async def _recovered(worker: PaperboyWorker) -> bool:
    await worker._poll_iteration()
    return worker.failed_polls == 0


def test_back_off_doubles_and_is_bounded() -> None:
    delays = [backoff_seconds(n) for n in range(1, 12)]
    assert delays[:3] == [0.1, 0.2, 0.4]
    assert delays == sorted(delays)
    assert max(delays) == BACKOFF_CAP_SECONDS
