"""The worker as arq runs it, in this process: a burst `Worker` with the real settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from paperboy_worker.poller import PaperboyWorker
from paperboy_worker.worker import worker_settings
from shared import queue
from shared.fetches import FetchTask
from shared.lifecycle import FETCH, KINDS
from shared.models import TaskStatus
from shared.store import open_backend
from shared.tasks import Repository, TaskRepository
from tests.worker.support import digest
from tests.worker.support import worker_settings as settings_for


def test_every_kind_has_its_job() -> None:
    functions = worker_settings(settings_for(Path("unused"), "redis://unused"))["functions"]
    names = {function.name for function in functions}
    assert {kind.job for kind in KINDS.values()} <= names


# arq's `Worker.close` still calls redis-py's deprecated `close`.
@pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")
async def test_a_burst_worker_runs_a_digest_and_a_fetch_to_the_end(
    tmp_path: Path, redis_url: str
) -> None:
    settings = settings_for(tmp_path, redis_url, fetch_max_tries=1)
    backend = await open_backend(settings)
    redis = await queue.open_pool(settings, retries=1)
    try:
        await TaskRepository(backend).create(digest())
        await Repository(backend, FETCH).create(
            FetchTask(task_id="f-1", source_date="2026-11-22", categories=["cs.AI"])
        )
        await queue.enqueue_digest(redis, "t-digest")
        await queue.enqueue_task(redis, FETCH, "f-1")

        worker = PaperboyWorker(
            **{**worker_settings(settings), "burst": True, "poll_delay": 0, "handle_signals": False}
        )
        try:
            await worker.main()
        finally:
            await worker.close()

        done = await TaskRepository(backend).get("t-digest")
        assert done is not None and done.status is TaskStatus.COMPLETED
        # arxiv.test does not resolve: a transient failure, and fetch_max_tries=1 ends it
        fetched = await Repository(backend, FETCH).get("f-1")
        assert fetched is not None and fetched.status is TaskStatus.FAILED
        assert (worker.jobs_complete, worker.jobs_failed) == (2, 0)
    finally:
        await redis.aclose()
        await backend.close()
