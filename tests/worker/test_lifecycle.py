"""One runner records every attempt's outcome, the same way for every kind of task."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from arq import Retry

from paperboy_worker.context import WorkerContext
from paperboy_worker.lifecycle import run_task
from shared import keys
from shared.errors import PermanentError, TransientError
from shared.fetches import FetchTask
from shared.lifecycle import FETCH, KINDS
from shared.models import CallbackStatus, TaskStatus
from shared.store import Row
from shared.tasks import Repository
from tests.worker.support import queued, worker_context, worker_settings

RESULT: Row = {"result": {"total_count": 3}}
HOOK = "http://127.0.0.1:9/hook"


@pytest.fixture
async def ctx(tmp_path: Path, redis_url: str) -> AsyncIterator[WorkerContext]:
    settings = worker_settings(
        tmp_path, redis_url, fetch_max_tries=2, fetch_max_interruptions=1, task_timeout=1
    )
    async with worker_context(settings) as context:
        yield context


@pytest.fixture
def fetches(ctx: WorkerContext) -> Repository[FetchTask]:
    return Repository(ctx["backend"], FETCH)


async def new(fetches: Repository[FetchTask], **fields: object) -> FetchTask:
    task = FetchTask(task_id="f-1", source_date="2026-11-22", callback_url=HOOK, **fields)
    await fetches.create(task)
    return task


async def stored(fetches: Repository[FetchTask]) -> FetchTask:
    task = await fetches.get("f-1")
    assert task is not None
    return task


async def test_success_completes_notifies_and_lets_go_of_the_lease(
    ctx: WorkerContext, fetches: Repository[FetchTask]
) -> None:
    await new(fetches)

    async def work(ctx: WorkerContext, task: FetchTask) -> Row:
        assert await ctx["redis"].exists(keys.lease_key(task.task_id))  # held while it runs
        return RESULT

    assert await run_task(ctx, FETCH, "f-1", work) == "completed"

    task = await stored(fetches)
    assert (task.status, task.result, task.message) == (
        TaskStatus.COMPLETED,
        RESULT["result"],
        "Sources fetched",
    )
    assert not task.running and task.callback_status is CallbackStatus.PENDING
    assert task.delivery_id is not None
    assert await queued(ctx, FETCH.callback_job_id("f-1"))
    assert not await ctx["redis"].exists(keys.lease_key("f-1"))
    assert await run_task(ctx, FETCH, "f-1", work) == "nothing to do"


async def test_a_transient_error_is_retried_on_the_kinds_own_budget(
    ctx: WorkerContext, fetches: Repository[FetchTask]
) -> None:
    await new(fetches)

    async def flaky(ctx: WorkerContext, task: FetchTask) -> Row:
        raise TransientError("arXiv answered 503", code="arxiv_unavailable")

    with pytest.raises(Retry) as retry:
        await run_task(ctx, FETCH, "f-1", flaky)
    assert retry.value.defer_score is not None and 0 < retry.value.defer_score <= 10_000
    task = await stored(fetches)
    assert (task.status, task.failures, task.running) == (TaskStatus.PROCESSING, 1, False)
    assert task.message.startswith("Attempt 1 failed (arxiv_unavailable: arXiv answered 503)")

    # fetch_max_tries=2 while the digests keep their default of 5: the second failure is final
    assert await run_task(ctx, FETCH, "f-1", flaky) == "failed"
    task = await stored(fetches)
    assert (task.failures, task.error_code) == (2, "arxiv_unavailable")
    assert task.error == "arXiv answered 503 (after 2 tries)"
    assert await queued(ctx, FETCH.callback_job_id("f-1"))


async def test_a_wait_that_is_nobodys_fault_costs_no_attempt(
    ctx: WorkerContext, fetches: Repository[FetchTask]
) -> None:
    await new(fetches)

    async def limited(ctx: WorkerContext, task: FetchTask) -> Row:
        raise TransientError("provider busy", code="llm_rate_limited", retry_after=2)

    for _ in range(3):
        with pytest.raises(Retry):
            await run_task(ctx, FETCH, "f-1", limited)
    task = await stored(fetches)
    assert (task.failures, task.interruptions, task.attempt) == (0, 0, 3)


async def test_a_permanent_error_fails_at_once(
    ctx: WorkerContext, fetches: Repository[FetchTask]
) -> None:
    await new(fetches)

    async def broken(ctx: WorkerContext, task: FetchTask) -> Row:
        raise PermanentError("no such category", code="bad_category")

    assert await run_task(ctx, FETCH, "f-1", broken) == "failed"
    task = await stored(fetches)
    assert (task.failures, task.error_code, task.message) == (
        1,
        "bad_category",
        "Failed: no such category",
    )


async def test_an_attempt_over_its_time_is_a_transient_failure(
    ctx: WorkerContext, fetches: Repository[FetchTask]
) -> None:
    await new(fetches)

    async def stuck(ctx: WorkerContext, task: FetchTask) -> Row:
        await asyncio.Event().wait()  # never set: only the attempt's timeout ends it
        return RESULT

    with pytest.raises(Retry):
        await run_task(ctx, FETCH, "f-1", stuck)
    task = await stored(fetches)
    assert (task.error_code, task.failures) == ("timeout", 1)


async def test_a_zombie_attempt_is_fenced_and_writes_nothing(
    ctx: WorkerContext, fetches: Repository[FetchTask]
) -> None:
    await new(fetches)

    async def superseded(ctx: WorkerContext, task: FetchTask) -> Row:
        # The lease lapsed and another worker claimed the task while this one was away.
        await fetches.claim("f-1", "worker-b", max_failures=2, max_interruptions=1)
        return RESULT

    assert await run_task(ctx, FETCH, "f-1", superseded) == "fenced"
    task = await stored(fetches)
    assert (task.status, task.attempt, task.worker_id) == (TaskStatus.PROCESSING, 2, "worker-b")
    assert task.result is None
    assert not await queued(ctx, FETCH.callback_job_id("f-1"))


async def test_a_cancel_stops_the_attempt_at_its_next_write(
    ctx: WorkerContext, fetches: Repository[FetchTask]
) -> None:
    await new(fetches)

    async def cancelled(ctx: WorkerContext, task: FetchTask) -> Row:
        await fetches.cancel(task.task_id)  # an operator, meanwhile
        await fetches.progress(task, "the next stage")
        return RESULT

    assert await run_task(ctx, FETCH, "f-1", cancelled) == "cancelled"
    task = await stored(fetches)
    assert (task.status, task.error_code, task.result) == (TaskStatus.CANCELLED, "cancelled", None)
    assert await queued(ctx, FETCH.callback_job_id("f-1"))


async def test_a_shutdown_gives_the_task_back_and_the_next_claim_counts_it(
    ctx: WorkerContext, fetches: Repository[FetchTask]
) -> None:
    await new(fetches)

    async def interrupted(ctx: WorkerContext, task: FetchTask) -> Row:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await run_task(ctx, FETCH, "f-1", interrupted)
    task = await stored(fetches)
    assert task.running and task.message.startswith("Interrupted by a worker shutdown")
    assert not await ctx["redis"].exists(keys.lease_key("f-1"))

    # fetch_max_interruptions=1: the next claim counts one, and another interruption ends it
    with pytest.raises(asyncio.CancelledError):
        await run_task(ctx, FETCH, "f-1", interrupted)
    assert await run_task(ctx, FETCH, "f-1", interrupted) == "failed"
    task = await stored(fetches)
    assert (task.error_code, task.interruptions, task.failures) == ("too_many_interruptions", 2, 0)
    assert task.error == "The fetch was interrupted 2 times without finishing"


def test_every_kind_has_its_own_job_ids() -> None:
    job_ids = {kind.job_id("x") for kind in KINDS.values()}
    callback_ids = {kind.callback_job_id("x") for kind in KINDS.values()}
    assert len(job_ids) == len(callback_ids) == len(KINDS)
    assert KINDS["digest"].job_id("x") == "x"  # queued digests keep the ids they were given
    assert KINDS["digest"].callback_job_id("x") == "callback:x"
    assert FETCH.callback_job_id("x") == "callback:fetch:x"
