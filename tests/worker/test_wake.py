"""An idle worker blocks on the wake list instead of polling: an enqueue wakes it at once, a
deferred job is run at its time, it stays under 2 Redis commands a second, and SIGTERM ends the
block at once."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from pathlib import Path

import pytest
from arq import Retry, func
from arq.connections import ArqRedis

from paperboy_worker.poller import IDLE_POLL_SECONDS, PaperboyWorker
from shared import arqstore, keys
from tests.processes import Proc, base_env
from tests.redis_server import RedisServer
from tests.support import wait_until, wait_until_async

pytestmark = pytest.mark.integration

# Far longer than any wait below: a job that runs sooner was woken, not found by the safety net.
IDLE_POLL = 30.0
IDLE_WINDOW = 10.0
IDLE_COMMANDS_PER_SECOND = 2.0


@pytest.fixture
async def pool(private_redis: RedisServer) -> AsyncIterator[ArqRedis]:
    client: ArqRedis = ArqRedis.from_url(private_redis.url)
    client.job_serializer = arqstore.serialize  # as `arqstore.enqueue` writes jobs
    yield client
    await client.aclose()


class Workers:
    """In-process workers on one pool, each running arq's loop; all closed at the end."""

    def __init__(self, pool: ArqRedis) -> None:
        self.pool = pool
        self.ran: dict[str, float] = {}
        self.release = asyncio.Event()
        self.running: list[tuple[PaperboyWorker, asyncio.Task[None]]] = []

    async def record(self, ctx: dict[str, object], name: str, hold: bool = False) -> None:
        self.ran[name] = time.monotonic()
        if hold:
            await self.release.wait()

    async def retry_once(self, ctx: dict[str, object], name: str) -> None:
        """On its first try, once released, asks arq to retry in a second, as a digest backs off."""
        if ctx["job_try"] == 1:
            self.ran["first try"] = time.monotonic()
            await self.release.wait()
            raise Retry(defer=1)
        self.ran[name] = time.monotonic()

    async def blocked(self) -> int:
        info = await self.pool.info("clients")
        return int(info["blocked_clients"])

    async def start(self, max_jobs: int = 10, idle_poll: float = IDLE_POLL) -> PaperboyWorker:
        worker = PaperboyWorker(
            functions=[
                func(self.record, name="record"),
                func(self.retry_once, name="retry_once"),
            ],
            redis_pool=self.pool,
            queue_name=keys.QUEUE,
            max_jobs=max_jobs,
            handle_signals=False,
            keep_result=0,
            job_serializer=arqstore.serialize,
            job_deserializer=arqstore.deserialize,
            poll_delay=0.01,
            idle_poll_seconds=idle_poll,
            job_completion_wait=IDLE_POLL,
        )
        self.running.append((worker, asyncio.create_task(worker.async_run())))
        return worker

    async def start_blocked(
        self, max_jobs: int = 10, idle_poll: float = IDLE_POLL
    ) -> PaperboyWorker:
        """A worker that is already blocked on the wake list when this returns."""
        before = await self.blocked()
        worker = await self.start(max_jobs, idle_poll)
        await wait_until_async(lambda: self._blocked_more_than(before), within=5)
        return worker

    async def _blocked_more_than(self, count: int) -> bool:
        return await self.blocked() > count

    async def ran_within(self, name: str, within: float) -> float:
        await wait_until_async(lambda: _true(name in self.ran), within=within)
        return self.ran[name]

    async def close(self) -> None:
        self.release.set()
        for worker, task in self.running:
            if not task.done():
                worker.handle_sig(signal.SIGTERM)
            with suppress(asyncio.CancelledError):
                await task
            worker._pool = None  # the pool is the fixture's to close
            await worker.close()


async def _true(value: bool) -> bool:
    return value


@pytest.fixture
async def workers(pool: ArqRedis) -> AsyncIterator[Workers]:
    running = Workers(pool)
    yield running
    await running.close()


async def test_an_enqueue_wakes_a_blocked_worker_at_once(workers: Workers) -> None:
    await workers.start_blocked()

    enqueued = time.monotonic()
    assert await arqstore.enqueue(workers.pool, "record", "job-1", "job-1")

    assert await workers.ran_within("job-1", within=2) - enqueued < 0.5


async def test_a_deferred_job_queued_without_a_push_runs_at_its_time(workers: Workers) -> None:
    # arq's own enqueue (as its `Retry` re-queues a job) pushes nothing: the worker must plan
    # its wait from the queue's next score, not the 30 s safety net.
    enqueued = time.monotonic()
    await workers.pool.enqueue_job(
        "record", "later", _job_id="later", _defer_by=1, _queue_name=keys.QUEUE
    )
    await workers.start()

    ran = await workers.ran_within("later", within=5) - enqueued
    assert 0.9 < ran < 2


async def test_a_deferred_enqueue_replans_a_blocked_worker(workers: Workers) -> None:
    await workers.start_blocked()

    enqueued = time.monotonic()
    assert await arqstore.enqueue(workers.pool, "record", "later", "later", defer=1)

    ran = await workers.ran_within("later", within=5) - enqueued
    assert 0.9 < ran < 2


async def test_a_retry_while_the_worker_blocks_runs_at_its_time(workers: Workers) -> None:
    worker = await workers.start_blocked()
    assert await arqstore.enqueue(workers.pool, "retry_once", "again", "again")
    await workers.ran_within("first try", within=2)
    await wait_until_async(lambda: _true(worker._blocked is not None), within=2)

    released = time.monotonic()
    workers.release.set()  # arq re-queues the job a second ahead, with no push

    ran = await workers.ran_within("again", within=5) - released
    assert 0.9 < ran < 2


async def test_a_worker_woken_but_full_passes_the_wake_on(workers: Workers) -> None:
    await workers.start_blocked(max_jobs=1)  # first in line for the wake
    await workers.start_blocked()
    # One job without a push, then one with: the full worker is woken, takes one of them, and
    # the other would wait for the 30 s safety net unless the second worker is woken too.
    await workers.pool.enqueue_job("record", "quiet", True, _job_id="quiet", _queue_name=keys.QUEUE)
    await arqstore.enqueue(workers.pool, "record", "loud", "loud", True)

    await workers.ran_within("quiet", within=2)
    await workers.ran_within("loud", within=2)


async def test_an_idle_worker_sends_at_most_two_commands_a_second(workers: Workers) -> None:
    # The wake loop alone, at the shipped safety-net poll: arq's health check is in it, the
    # worker process's heartbeat and sweeps are not (figure 2 of the bench measures those).
    await workers.start_blocked(idle_poll=IDLE_POLL_SECONDS)
    before = await _commands(workers.pool)
    await asyncio.sleep(IDLE_WINDOW)  # the measurement window, not a wait for work
    # The two INFO calls of the measurement are in the count.
    sent = await _commands(workers.pool) - before - 2

    assert sent / IDLE_WINDOW <= IDLE_COMMANDS_PER_SECOND, sent


async def test_a_shutdown_signal_ends_the_block_once_running_jobs_finish(
    workers: Workers,
) -> None:
    worker = await workers.start_blocked()
    await arqstore.enqueue(workers.pool, "record", "slow", "slow", True)
    await workers.ran_within("slow", within=2)
    await wait_until_async(lambda: _true(worker._blocked is not None), within=2)
    _, task = workers.running[0]

    worker.handle_sig_wait_for_completion(signal.SIGTERM)
    workers.release.set()

    # arq counts the job finished in a poll iteration: without one, the block would last 30 s.
    with suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=2)
    assert task.done()


async def _commands(pool: ArqRedis) -> int:
    return int((await pool.info("stats"))["total_commands_processed"])


def test_sigterm_stops_a_blocked_worker_process_at_once(
    private_redis: RedisServer, processes: Callable[..., Proc], tmp_path: Path
) -> None:
    # private_redis first: its fixture outlives the worker, which needs Redis to shut down.
    env = base_env(private_redis.url, tmp_path / "store.db", worker_poll_delay=0.01)
    worker = processes("worker", env)
    client = private_redis.client()
    wait_until(lambda: client.info("clients")["blocked_clients"] == 1, timeout=20)
    client.close()

    signalled = time.monotonic()
    worker.signal(signal.SIGTERM)
    worker.process.wait(timeout=10)

    assert time.monotonic() - signalled < 2, worker.log()
    assert worker.process.returncode == 0, worker.log()
