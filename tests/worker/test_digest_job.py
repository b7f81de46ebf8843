"""`generate_digest` in-process: the pipeline's result is recorded by the job, once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from paperboy_worker.context import WorkerContext
from paperboy_worker.digest_job import generate_digest
from shared import keys
from shared.lifecycle import DIGEST
from shared.models import CallbackStatus, DigestTask, Stage, TaskStatus
from tests.support import digest_body
from tests.worker.support import digest, queued, worker_context, worker_settings


@pytest.fixture
async def ctx(tmp_path: Path, redis_url: str) -> AsyncIterator[WorkerContext]:
    async with worker_context(worker_settings(tmp_path, redis_url)) as context:
        yield context


async def stored(ctx: WorkerContext, task_id: str = "t-digest") -> DigestTask:
    task = await ctx["tasks"].get(task_id)
    assert task is not None
    return task


async def test_a_digest_is_generated_and_its_callback_queued(ctx: WorkerContext) -> None:
    await ctx["tasks"].create(digest(callback_url="http://127.0.0.1:9/hook"))

    assert await generate_digest(ctx, "t-digest") == "completed"

    task = await stored(ctx)
    assert (task.status, task.stage, task.progress) == (TaskStatus.COMPLETED, Stage.DONE, 1.0)
    assert task.message == "Digest generated successfully"
    assert task.result is not None and "<html" in task.result.lower()
    assert task.articles and not task.running and task.attempt == 1
    assert task.callback_status is CallbackStatus.PENDING
    assert await queued(ctx, DIGEST.callback_job_id("t-digest"))
    assert not await ctx["redis"].exists(keys.lease_key("t-digest"))


async def test_a_day_without_sources_fails_without_a_retry(ctx: WorkerContext) -> None:
    request = digest_body(categories=["math.AG"])
    await ctx["tasks"].create(DigestTask(task_id="t-digest", request=request))

    assert await generate_digest(ctx, "t-digest") == "failed"

    task = await stored(ctx)
    assert (task.error_code, task.failures) == ("no_sources", 1)
    assert not await queued(ctx, DIGEST.callback_job_id("t-digest"))  # no callback_url


async def test_a_task_cancelled_before_its_attempt_is_left_alone(ctx: WorkerContext) -> None:
    await ctx["tasks"].create(digest())
    await ctx["tasks"].cancel("t-digest")

    assert await generate_digest(ctx, "t-digest") == "nothing to do"
    assert (await stored(ctx)).status is TaskStatus.CANCELLED
