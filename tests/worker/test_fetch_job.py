"""`fetch_sources` in-process: the fetch kind is one declaration and one work function."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import respx
from arq import Retry

from paperboy_worker.context import WorkerContext
from paperboy_worker.fetch_job import fetch_sources
from shared import keys
from shared.fetches import FetchTask
from shared.lifecycle import FETCH
from shared.models import TaskStatus
from shared.tasks import Repository
from tests.worker.support import ARXIV_URL, SAMPLE, worker_context, worker_settings


@pytest.fixture
async def ctx(tmp_path: Path, redis_url: str) -> AsyncIterator[WorkerContext]:
    settings = worker_settings(tmp_path, redis_url, source_mode="live", fetch_max_tries=2)
    async with worker_context(settings) as context:
        yield context


async def stored(ctx: WorkerContext) -> FetchTask:
    fetches = Repository(ctx["backend"], FETCH)
    task = await fetches.get("f-1")
    assert task is not None
    return task


@pytest.fixture
async def fetch_task(ctx: WorkerContext) -> None:
    task = FetchTask(task_id="f-1", source_date="2026-11-22", categories=["cs.AI", "cs.LG"])
    await Repository(ctx["backend"], FETCH).create(task)


@pytest.mark.usefixtures("fetch_task")
async def test_a_fetch_stores_the_days_sources_and_counts_them(ctx: WorkerContext) -> None:
    with respx.mock(assert_all_called=True) as mock:
        mock.get(ARXIV_URL).respond(200, content=SAMPLE.read_bytes())
        assert await fetch_sources(ctx, "f-1") == "completed"

    task = await stored(ctx)
    assert task.status is TaskStatus.COMPLETED and task.message == "Sources fetched"
    assert task.result is not None and task.result["total_count"] > 0
    assert set(task.result["by_category"]) == {"cs.AI", "cs.LG"}
    assert await ctx["backend"].count(keys.DAILY_SOURCES) == 2


@pytest.mark.usefixtures("fetch_task")
async def test_an_arxiv_outage_is_retried_then_fails_on_the_fetch_budget(
    ctx: WorkerContext,
) -> None:
    with respx.mock(assert_all_called=True) as mock:
        mock.get(ARXIV_URL).respond(503)
        with pytest.raises(Retry):
            await fetch_sources(ctx, "f-1")
        assert (await stored(ctx)).failures == 1
        assert await fetch_sources(ctx, "f-1") == "failed"

    task = await stored(ctx)
    assert task.status is TaskStatus.FAILED and task.failures == 2
    assert ctx["settings"].digest_max_tries == 5  # not what capped it
