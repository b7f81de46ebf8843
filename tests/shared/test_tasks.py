"""Task transitions, run against every store backend: forward only, fenced by attempt."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared import keys
from shared.errors import FencedError, TaskCancelledError
from shared.models import CallbackStatus, DigestTask, Stage, TaskStatus, Usage, stamp
from shared.store import Backend
from shared.tasks import TaskRepository


@pytest.fixture
def tasks(backend: Backend) -> TaskRepository:
    return TaskRepository(backend)


async def new_task(tasks: TaskRepository, task_id: str = "t-1", **fields: object) -> DigestTask:
    task = DigestTask(
        task_id=task_id,
        request={"user_info": {"name": "Ada"}},
        callback_url="https://hooks.example.com/x",
        **fields,  # type: ignore[arg-type]
    )
    assert await tasks.create(task)
    return task


async def claim(tasks: TaskRepository, task_id: str = "t-1") -> DigestTask:
    claimed = await tasks.claim(task_id, "w-1", max_failures=3, max_interruptions=3)
    assert claimed is not None
    return claimed


async def test_create_and_get_round_trip(tasks: TaskRepository) -> None:
    task = await new_task(tasks)

    stored = await tasks.get("t-1")

    assert stored is not None
    assert stored.model_dump() == task.model_dump()
    assert not await tasks.create(task)


async def test_claim_starts_an_attempt(tasks: TaskRepository) -> None:
    await new_task(tasks)

    claimed = await claim(tasks)

    assert claimed.status is TaskStatus.PROCESSING
    assert claimed.attempt == 1
    assert claimed.running
    assert claimed.interruptions == 0
    assert claimed.worker_id == "w-1"
    assert claimed.started_at is not None


async def test_a_claim_after_an_unfinished_attempt_counts_an_interruption(
    tasks: TaskRepository,
) -> None:
    await new_task(tasks)
    await claim(tasks)

    again = await claim(tasks)

    assert again.attempt == 2
    assert again.interruptions == 1
    assert again.failures == 0
    assert "interruption" in again.message


async def test_a_retry_is_a_failure_not_an_interruption(tasks: TaskRepository) -> None:
    await new_task(tasks)
    first = await claim(tasks)

    await tasks.retry_later(first, "provider busy", "llm_unavailable", 30)
    waiting = await tasks.get("t-1")
    second = await claim(tasks)

    assert waiting is not None
    assert waiting.status is TaskStatus.PROCESSING
    assert "attempt 2 at" in waiting.message
    assert second.failures == 1
    assert second.interruptions == 0


async def test_a_superseded_attempt_cannot_write(tasks: TaskRepository) -> None:
    await new_task(tasks)
    zombie = await claim(tasks)
    current = await claim(tasks)

    with pytest.raises(FencedError):
        await tasks.progress(zombie, "ranking", stage=Stage.RANK.value, progress=0.5)
    with pytest.raises(FencedError):
        await tasks.complete(
            zombie, {"result": "<html>old</html>", "articles": [], "degraded": False}
        )

    done = await tasks.complete(
        current, {"result": "<html>new</html>", "articles": [], "degraded": False}
    )
    assert done.result == "<html>new</html>"


async def test_a_terminal_status_is_never_overwritten(tasks: TaskRepository) -> None:
    await new_task(tasks)
    attempt = await claim(tasks)
    done = await tasks.complete(
        attempt, {"result": "<html/>", "articles": [{"x": 1}], "degraded": True}
    )

    with pytest.raises(FencedError):
        await tasks.fail(attempt, "late failure", "boom")
    assert await tasks.end_unowned("t-1", TaskStatus.FAILED, "lost", "lost") is None
    assert await tasks.claim("t-1", "w-2", max_failures=3, max_interruptions=3) is None

    stored = await tasks.get("t-1")
    assert stored is not None
    assert stored.status is TaskStatus.COMPLETED
    assert stored.articles == [{"x": 1}]
    assert stored.degraded
    assert stored.delivery_id == done.delivery_id
    assert stored.callback_status is CallbackStatus.PENDING


async def test_progress_and_usage_are_written_by_the_owner(tasks: TaskRepository) -> None:
    await new_task(tasks)
    attempt = await claim(tasks)

    attempt = await tasks.progress(attempt, "analysing", stage=Stage.ANALYSE.value, progress=0.5)
    attempt = await tasks.add_usage(attempt, Usage(llm_requests=2, prompt_tokens=10, cost_usd=0.5))
    attempt = await tasks.add_usage(attempt, Usage(llm_requests=1, completion_tokens=5))

    assert attempt.stage is Stage.ANALYSE
    assert attempt.progress == 0.5
    assert attempt.usage == Usage(
        llm_requests=3, prompt_tokens=10, completion_tokens=5, cost_usd=0.5
    )


async def test_a_cancel_request_stops_the_next_write(
    tasks: TaskRepository, backend: Backend
) -> None:
    await new_task(tasks)
    attempt = await claim(tasks)
    await backend.update(keys.DIGEST_TASKS, {"task_id": "t-1"}, {"cancel_requested": True})

    with pytest.raises(TaskCancelledError):
        await tasks.progress(attempt, "ranking", stage=Stage.RANK.value, progress=0.3)

    ended = await tasks.end_unowned("t-1", TaskStatus.CANCELLED, "cancelled", "cancelled")
    assert ended is not None
    assert ended.status is TaskStatus.CANCELLED
    assert ended.callback_status is CallbackStatus.PENDING


async def test_callback_outcome_is_recorded_once(tasks: TaskRepository) -> None:
    await new_task(tasks)
    attempt = await claim(tasks)
    await tasks.fail(attempt, "no sources", "no_sources")

    await tasks.record_callback("t-1", CallbackStatus.PENDING, 1, "HTTP 503")
    await tasks.record_callback("t-1", CallbackStatus.DELIVERED, 2, None)
    await tasks.record_callback("t-1", CallbackStatus.FAILED, 3, "late")

    stored = await tasks.get("t-1")
    assert stored is not None
    assert stored.callback_status is CallbackStatus.DELIVERED
    assert stored.callback_attempts == 2
    assert stored.failures == 1


async def test_listings_for_the_reconciler(tasks: TaskRepository) -> None:
    await new_task(tasks, "t-1")
    await new_task(tasks, "t-2")
    done = await claim(tasks, "t-2")
    await tasks.complete(done, {"result": "<html/>", "articles": [], "degraded": False})

    assert [t.task_id for t in await tasks.active()] == ["t-1"]
    assert [t.task_id for t in await tasks.undelivered()] == ["t-2"]


async def test_idempotency_keys(tasks: TaskRepository) -> None:
    day = timedelta(days=1)

    first = await tasks.remember_key("k", "hash-a", "t-1", day)
    same = await tasks.remember_key("k", "hash-a", "t-2", day)
    other = await tasks.remember_key("k", "hash-b", "t-3", day)
    expired = await tasks.remember_key("k", "hash-b", "t-4", timedelta(0))

    assert first.created and first.task_id == "t-1"
    assert not same.created and not same.conflict and same.task_id == "t-1"
    assert other.conflict and other.task_id == "t-1"
    assert expired.created and expired.task_id == "t-4"


async def test_retry_reopens_a_failed_task_once_its_callback_is_settled(
    tasks: TaskRepository,
) -> None:
    await new_task(tasks)
    attempt = await claim(tasks)
    await tasks.fail(attempt, "no sources", "no_sources")

    assert await tasks.reopen("t-1") is None  # the failure callback is still pending
    await tasks.record_callback("t-1", CallbackStatus.DELIVERED, 1, None)
    reopened = await tasks.reopen("t-1")

    assert reopened is not None
    assert reopened.status is TaskStatus.PENDING
    assert reopened.failures == 0
    assert reopened.callback_status is CallbackStatus.NONE
    assert (await claim(tasks)).attempt == 2
    assert await tasks.reopen("t-1") is None  # processing: nothing to retry


async def test_cancel_ends_an_idle_task_at_once_and_flags_a_running_one(
    tasks: TaskRepository,
) -> None:
    await new_task(tasks, "idle")
    await new_task(tasks, "busy")
    await claim(tasks, "busy")

    idle = await tasks.cancel("idle")
    busy = await tasks.cancel("busy")

    assert idle is not None and idle.status is TaskStatus.CANCELLED
    assert busy is not None and busy.status is TaskStatus.PROCESSING and busy.cancel_requested
    assert await tasks.cancel("idle") is None


async def test_pages_are_newest_first(tasks: TaskRepository) -> None:
    for index in range(5):
        await new_task(tasks, f"t-{index}")

    first = await tasks.page(None, None, 2)
    rest = await tasks.page(None, stamp(first[-1].created_at), 10)

    assert [t.task_id for t in first + rest] == ["t-4", "t-3", "t-2", "t-1", "t-0"]
