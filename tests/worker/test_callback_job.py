"""A callback job always ends: delivered, retried inside its window, or failed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import fakeredis
import httpx
import pytest
from arq import Retry

from paperboy_worker.callback_job import deliver_callback
from shared.fetches import FetchTask
from shared.lifecycle import FETCH
from shared.metrics import Metrics
from shared.models import CallbackStatus, DigestTask, TaskStatus, utcnow
from shared.settings import Settings
from shared.store.sqlite import SqliteBackend
from shared.tasks import Repository, TaskRepository

WINDOW = 3600


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    backend = SqliteBackend(tmp_path / "store.db")
    await backend.open()
    redis = fakeredis.FakeAsyncRedis()
    async with httpx.AsyncClient(trust_env=False) as http:
        yield {
            "settings": Settings(callback_retry_window_seconds=WINDOW),
            "backend": backend,
            "tasks": TaskRepository(backend),
            "metrics": Metrics(redis),
            "callback_http": http,
        }
    await redis.aclose()
    await backend.close()


async def finished_task(ctx: dict[str, Any], url: str, *, age: timedelta) -> DigestTask:
    task = DigestTask(
        task_id="t-callback",
        status=TaskStatus.FAILED,
        error="boom",
        callback_url=url,
        callback_status=CallbackStatus.PENDING,
        delivery_id="d-1",
        finished_at=utcnow() - age,
    )
    await ctx["tasks"].create(task)
    return task


async def test_a_stored_host_dns_cannot_carry_ends_failed(ctx: dict[str, Any]) -> None:
    # Accepted before hosts were checked with IDNA; the resolver raised and it stayed pending.
    await finished_task(ctx, "http://a..example.com/hook", age=timedelta(seconds=1))

    assert await deliver_callback(ctx, "t-callback") == "failed"  # type: ignore[arg-type]

    task = await ctx["tasks"].get("t-callback")
    assert task.callback_status is CallbackStatus.FAILED
    assert task.callback_attempts == 1
    assert "label" in task.callback_error


async def test_a_lookup_failure_is_retried_inside_the_window(ctx: dict[str, Any]) -> None:
    await finished_task(ctx, "http://paperboy-callback.invalid/hook", age=timedelta(seconds=1))

    with pytest.raises(Retry):
        await deliver_callback(ctx, "t-callback")  # type: ignore[arg-type]

    task = await ctx["tasks"].get("t-callback")
    assert task.callback_status is CallbackStatus.PENDING
    assert task.callback_attempts == 1
    assert "could not resolve" in task.callback_error


async def test_a_lookup_failure_after_the_window_ends_failed(ctx: dict[str, Any]) -> None:
    age = timedelta(seconds=WINDOW + 1)
    await finished_task(ctx, "http://paperboy-callback.invalid/hook", age=age)

    assert await deliver_callback(ctx, "t-callback") == "failed"  # type: ignore[arg-type]

    task = await ctx["tasks"].get("t-callback")
    assert task.callback_status is CallbackStatus.FAILED


async def test_a_fetch_tasks_callback_is_recorded_on_the_fetch_row(ctx: dict[str, Any]) -> None:
    fetches = Repository(ctx["backend"], FETCH)
    await fetches.create(
        FetchTask(
            task_id="f-callback",
            source_date="2026-11-22",
            status=TaskStatus.COMPLETED,
            callback_url="http://a..example.com/hook",
            callback_status=CallbackStatus.PENDING,
            delivery_id="d-2",
            finished_at=utcnow(),
        )
    )

    assert await deliver_callback(ctx, "f-callback", "fetch") == "failed"  # type: ignore[arg-type]

    task = await fetches.get("f-callback")
    assert task is not None and task.callback_status is CallbackStatus.FAILED
    assert await ctx["tasks"].get("f-callback") is None  # the digests' table is not involved
