"""Every assumption Paperboy makes about arq's internals, checked against the installed arq.

`shared/arqstore.py` writes arq's job format and reads and deletes arq's keys itself, and
`paperboy_worker/poller.py` overrides arq's `Worker` hooks. Neither is arq's public API, so an
upgrade must fail here first and say what to re-read.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import AsyncIterator
from typing import Any

import arq
import pytest
from arq import func
from arq.connections import ArqRedis
from arq.jobs import Job, JobStatus
from arq.worker import Worker

from paperboy_worker.poller import PaperboyWorker
from shared import arqstore, keys, queue
from shared.settings import Settings

pytestmark = pytest.mark.integration

PINNED_ARQ = "0.28.0"
RE_CHECK = (
    "re-read arq's constants.py (key names), connections.py `enqueue_job` (job key, result key, "
    "queue score, refusal of a known id), jobs.py `serialize_job`/`Job.status`/`JobStatus`, and "
    "worker.py `start_jobs`/`run_job`/`_poll_iteration` (the in-progress claim, the retry count, "
    "`job_counter` and `sem`), then run this file and move the pin"
)
FUNCTION = "contract_job"


def test_the_installed_arq_is_the_one_these_assumptions_were_checked_against() -> None:
    assert arq.VERSION == PINNED_ARQ, f"arq {arq.VERSION} is installed: {RE_CHECK}"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[ArqRedis]:
    client = queue.connect(Settings(redis_url=redis_url))
    yield client
    await client.aclose()


def job_id() -> str:
    return f"contract-{uuid.uuid4().hex}"


class Observed:
    """What a running job sees of its own keys, recorded from inside it."""

    def __init__(self, redis: ArqRedis) -> None:
        self.redis = redis
        self.runs: list[dict[str, Any]] = []

    async def run(self, ctx: dict[str, Any], *args: Any) -> str:
        job_id = ctx["job_id"]
        self.runs.append(
            {
                "args": list(args),
                "job_try": ctx["job_try"],
                "claimed": await self.redis.exists(arqstore.in_progress_key(job_id)),
                "retries": await self.redis.get(arqstore.retry_key(job_id)),
                "queued": await self.redis.zscore(keys.QUEUE, job_id) is not None,
                "status": await arqstore.job_status(self.redis, job_id),
                "summary": await arqstore.queue_summary(self.redis),
            }
        )
        return "done"


def worker_for(redis: ArqRedis, job: Observed, **options: Any) -> Worker:
    return Worker(
        functions=[func(job.run, name=FUNCTION)],
        redis_pool=redis,
        queue_name=keys.QUEUE,
        job_deserializer=arqstore.deserialize,
        job_serializer=arqstore.serialize,
        handle_signals=False,
        poll_delay=0,
        **options,
    )


async def test_a_job_we_write_is_read_back_and_run_by_arq(redis: ArqRedis) -> None:
    job = job_id()
    assert await arqstore.enqueue(redis, FUNCTION, job, "task-1", {"n": 1})

    info = await Job(job, redis, _queue_name=keys.QUEUE, _deserializer=arqstore.deserialize).info()
    assert info is not None
    assert (info.function, list(info.args), info.kwargs) == (FUNCTION, ["task-1", {"n": 1}], {})

    observed = Observed(redis)
    await worker_for(redis, observed, burst=True, keep_result=60).main()

    # While it ran: claimed, still in the queue, counted as a first try, running to both readers.
    assert observed.runs == [
        {
            "args": ["task-1", {"n": 1}],
            "job_try": 1,
            "claimed": 1,
            "retries": b"1",
            "queued": True,
            "status": JobStatus.in_progress,
            "summary": {"queued": 0, "running": 1, "deferred": 0, "oldest_queued_age_s": 0},
        }
    ]
    # Finished: out of the queue, its result kept, and an id with a result is refused by both.
    assert await arqstore.job_status(redis, job) == JobStatus.complete
    assert not await redis.exists(arqstore.job_key(job), arqstore.in_progress_key(job))
    assert await redis.exists(arqstore.result_key(job))
    assert not await arqstore.enqueue(redis, FUNCTION, job)
    assert await redis.enqueue_job(FUNCTION, _job_id=job, _queue_name=keys.QUEUE) is None


async def test_arqs_own_enqueue_writes_the_keys_we_read(redis: ArqRedis) -> None:
    job = job_id()
    assert await redis.enqueue_job(FUNCTION, "x", _job_id=job, _queue_name=keys.QUEUE)

    assert await redis.exists(arqstore.job_key(job))
    assert await arqstore.job_status(redis, job) == JobStatus.queued
    assert not await arqstore.enqueue(redis, FUNCTION, job)  # a queued id, refused by us too


async def test_job_status_has_the_values_we_read(redis: ArqRedis) -> None:
    assert {status.value for status in JobStatus} == {
        "deferred",
        "queued",
        "in_progress",
        "complete",
        "not_found",
    }
    later = job_id()
    assert await arqstore.enqueue(redis, FUNCTION, later, defer=60)
    assert await arqstore.job_status(redis, later) == JobStatus.deferred
    assert await arqstore.job_status(redis, job_id()) == JobStatus.not_found


async def test_a_claimed_job_runs_again_once_its_claim_is_reclaimed(redis: ArqRedis) -> None:
    """The lease reaper's whole premise: arq skips a job another worker claimed, and runs it as
    its next try once the claim is deleted while the job is still queued under its id."""
    job = job_id()
    assert await arqstore.enqueue(redis, FUNCTION, job, "task-2")
    await redis.set(arqstore.in_progress_key(job), b"1")
    await redis.set(arqstore.retry_key(job), b"1")  # the first try had started
    observed = Observed(redis)
    worker = worker_for(redis, observed)
    await worker._poll_iteration()
    await asyncio.gather(*worker.tasks.values())
    assert observed.runs == []

    in_progress, job_key, queue_key = arqstore.reclaim_keys(job)
    assert (job_key, queue_key) == (arqstore.job_key(job), keys.QUEUE)
    await redis.delete(in_progress)
    await worker._poll_iteration()
    await asyncio.gather(*worker.tasks.values())

    assert [(run["args"], run["job_try"]) for run in observed.runs] == [(["task-2"], 2)]


async def test_the_worker_hooks_the_poller_overrides_are_there(redis: ArqRedis) -> None:
    assert inspect.iscoroutinefunction(Worker._poll_iteration)
    assert list(inspect.signature(Worker._poll_iteration).parameters) == ["self"]
    assert list(inspect.signature(Worker.start_jobs).parameters) == ["self", "job_ids"]
    # The wake: a retry ends the block, a shutdown signal too, and cron slots bound its length.
    assert list(inspect.signature(Worker.run_job).parameters) == ["self", "job_id", "score"]
    assert list(inspect.signature(Worker.handle_sig_wait_for_completion).parameters) == [
        "self",
        "signum",
    ]
    worker = PaperboyWorker(
        functions=[func(Observed(redis).run, name=FUNCTION)],
        redis_pool=redis,
        queue_name=keys.QUEUE,
        handle_signals=False,
    )
    # `start_jobs` counts a claim in `job_counter` and holds `sem` for it; the poller gives
    # both back when a claim dies on the connection. tests/worker/test_poller.py runs that.
    assert worker.job_counter == 0
    assert (worker.jobs_retried, worker.allow_pick_jobs, worker.cron_jobs) == (0, True, [])
    assert worker.poll_delay_s > 0
    assert isinstance(worker.sem, asyncio.BoundedSemaphore)
    assert worker.health_check_key == keys.QUEUE + ":health-check"
    assert arqstore.health_check_key("host").startswith(worker.health_check_key)
