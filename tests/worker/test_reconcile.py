"""The reconciler puts back what the store says should be in flight, for every kind of task."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from arq.jobs import Job

from paperboy_worker.context import WorkerContext
from paperboy_worker.reconcile import reap_leases, reconcile
from shared import keys, queue
from shared.fetches import FetchTask
from shared.lifecycle import DIGEST, FETCH
from shared.models import CallbackStatus, TaskStatus
from shared.tasks import Repository
from tests.worker.support import digest, queued, worker_context, worker_settings

HOOK = "http://127.0.0.1:9/hook"


@pytest.fixture
async def ctx(tmp_path: Path, redis_url: str) -> AsyncIterator[WorkerContext]:
    async with worker_context(worker_settings(tmp_path, redis_url)) as context:
        yield context


async def test_active_tasks_without_a_job_are_queued_again_once(ctx: WorkerContext) -> None:
    await ctx["tasks"].create(digest("t-lost"))
    await ctx["tasks"].create(digest("t-leased"))
    await ctx["redis"].set(keys.lease_key("t-leased"), "another-worker:1")
    await Repository(ctx["backend"], FETCH).create(
        FetchTask(task_id="f-lost", source_date="2026-11-22")
    )

    assert await reconcile(ctx) == {"requeued": 2, "redelivered": 0, "emails": 0}

    assert await queued(ctx, DIGEST.job_id("t-lost"))
    assert await queued(ctx, FETCH.job_id("f-lost"))
    assert not await queued(ctx, DIGEST.job_id("t-leased"))  # its holder is alive
    assert await reconcile(ctx) == {
        "requeued": 0,
        "redelivered": 0,
        "emails": 0,
    }  # the jobs are live


async def test_undelivered_callbacks_get_their_job_again(ctx: WorkerContext) -> None:
    pending = {"callback_url": HOOK, "callback_status": CallbackStatus.PENDING}
    await ctx["tasks"].create(digest("t-done", status=TaskStatus.COMPLETED, **pending))
    await Repository(ctx["backend"], FETCH).create(
        FetchTask(task_id="f-done", source_date="2026-11-22", status=TaskStatus.FAILED, **pending)
    )
    await queue.enqueue_callback(ctx["redis"], "t-done")  # already live: left alone

    assert await reconcile(ctx) == {"requeued": 0, "redelivered": 1, "emails": 0}

    assert await queued(ctx, FETCH.callback_job_id("f-done"))
    job = Job(FETCH.callback_job_id("f-done"), ctx["redis"], _deserializer=queue.deserialize)
    info = await job.info()
    assert info is not None and list(info.args) == ["f-done", "fetch"]


async def test_no_lease_to_reap_reaps_nothing(ctx: WorkerContext) -> None:
    assert await reap_leases(ctx) == 0
