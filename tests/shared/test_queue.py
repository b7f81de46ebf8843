"""Our one-round-trip enqueue writes exactly what arq's `enqueue_job` would, and dedupes alike."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from arq.jobs import Job, JobStatus

from shared import arqstore, keys, queue
from shared.lifecycle import FETCH
from shared.settings import Settings
from tests.support import REDIS_DB, REDIS_HOST, REDIS_PORT

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis() -> AsyncIterator[queue.ArqRedis]:
    client = queue.connect(Settings(redis_url=f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"))
    yield client
    await client.aclose()


async def test_a_job_enqueued_here_reads_back_through_arq(redis: queue.ArqRedis) -> None:
    task_id = f"t-{uuid.uuid4().hex}"
    try:
        assert await queue.enqueue_digest(redis, task_id)
        job = Job(task_id, redis, _queue_name=keys.QUEUE, _deserializer=queue.deserialize)
        info = await job.info()

        assert await job.status() == JobStatus.queued
        assert info is not None
        assert info.function == keys.GENERATE_DIGEST
        assert list(info.args) == [task_id]
        assert 0 < await redis.pttl(arqstore.job_key(task_id)) <= 3 * 86_400_000
        # Refused while queued, by us and by arq alike.
        assert not await queue.enqueue_digest(redis, task_id)
        assert await redis.enqueue_job(keys.GENERATE_DIGEST, task_id, _job_id=task_id) is None
    finally:
        await redis.delete(arqstore.job_key(task_id))
        await redis.zrem(keys.QUEUE, task_id)


async def test_a_deferred_job_waits_for_its_score(redis: queue.ArqRedis) -> None:
    task_id = f"t-{uuid.uuid4().hex}"
    try:
        assert await queue.enqueue_callback(redis, task_id, kind=FETCH, defer=30)
        job_id = FETCH.callback_job_id(task_id)
        job = Job(job_id, redis, _queue_name=keys.QUEUE, _deserializer=queue.deserialize)

        assert await job.status() == JobStatus.deferred
        info = await job.info()
        assert info is not None
        assert list(info.args) == [task_id, "fetch"]
    finally:
        await redis.delete(arqstore.job_key(FETCH.callback_job_id(task_id)))
        await redis.zrem(keys.QUEUE, FETCH.callback_job_id(task_id))


async def test_the_next_job_skips_claimed_ones_and_sees_one_already_due(
    redis: queue.ArqRedis,
) -> None:
    """What an idle worker plans its wait by: a running job (claimed, still in the queue at its
    old score) is skipped; a job that came due while nobody looked counts, however late."""
    queue_name = f"{keys.QUEUE}:test-{uuid.uuid4().hex}"
    running, due, later = (f"j-{uuid.uuid4().hex}" for _ in range(3))
    try:
        await redis.zadd(queue_name, {running: 1_000, due: 2_000, later: 9_000_000_000_000})
        await redis.set(arqstore.in_progress_key(running), b"1")
        assert await arqstore.next_job_ms(redis, queue_name) == 2_000

        await redis.zrem(queue_name, due)
        assert await arqstore.next_job_ms(redis, queue_name) == 9_000_000_000_000
        await redis.zrem(queue_name, later)
        assert await arqstore.next_job_ms(redis, queue_name) is None
    finally:
        await redis.delete(queue_name, arqstore.in_progress_key(running))
