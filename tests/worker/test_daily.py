"""The daily slot and its catch-up, with a controlled clock, and the fan-out over subscribers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis

from paperboy_worker.daily import daily_run, daily_task_id, last_slot, missed_source_date
from shared import keys
from shared.logs import extra_fields
from shared.settings import Settings
from shared.store import Query
from shared.store.sqlite import SqliteBackend
from shared.tasks import TaskRepository

SLOT = datetime(2026, 11, 20, 13, 0, tzinfo=UTC)


def test_a_worker_starting_three_hours_after_the_slot_runs_it() -> None:
    now = datetime(2026, 11, 20, 16, 0, tzinfo=UTC)

    assert last_slot(now, 13) == SLOT
    assert missed_source_date(now, 13, catchup_hours=6) == date(2026, 11, 19)


def test_a_worker_starting_thirty_hours_after_the_slot_does_not() -> None:
    now = datetime(2026, 11, 21, 19, 0, tzinfo=UTC)  # 30 h after SLOT, 6 h after the next one

    assert missed_source_date(now, 13, catchup_hours=4) is None
    assert missed_source_date(now, 13, catchup_hours=6) == date(2026, 11, 20)  # the next slot


def test_before_the_slot_the_previous_day_counts() -> None:
    now = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

    assert last_slot(now, 13) == datetime(2026, 11, 19, 13, 0, tzinfo=UTC)
    assert missed_source_date(now, 13, catchup_hours=6) is None
    assert missed_source_date(now, 13, catchup_hours=24) == date(2026, 11, 18)


def test_task_ids_are_derived_from_user_and_date() -> None:
    day = date(2026, 11, 19)

    assert daily_task_id("u1", day) == daily_task_id("u1", day)
    assert daily_task_id("u1", day) != daily_task_id("u2", day)
    assert daily_task_id("u1", day) != daily_task_id("u1", date(2026, 11, 20))


@pytest.fixture
async def ctx(tmp_path: Path, redis_url: str) -> AsyncIterator[dict[str, Any]]:
    backend = SqliteBackend(tmp_path / "store.db")
    await backend.open()
    redis = ArqRedis.from_url(redis_url)  # the run queues with arq's Lua: a real Redis
    http = httpx.AsyncClient()
    settings = Settings(daily_spread_seconds=0)
    yield {
        "settings": settings,
        "backend": backend,
        "tasks": TaskRepository(backend),
        "redis": redis,
        "http": http,
    }
    await http.aclose()
    await redis.aclose()
    await backend.close()


def subscriber(n: int, **fields: object) -> dict[str, object]:
    user_id = f"00000000-0000-4000-8000-{n:012d}"
    return {"user_id": user_id, "email": f"u{n}@example.com", "name": f"U{n}", **fields}


async def test_a_malformed_profile_is_skipped_and_reported_and_the_others_run(
    ctx: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    backend = ctx["backend"]
    await backend.insert(keys.PROFILES, subscriber(1, goals="graphs", interests="AI policy"))
    await backend.insert(keys.PROFILES, subscriber(2, goals="graphs", name=None))
    await backend.insert(keys.PROFILES, subscriber(3, goals="agents"))
    await backend.insert(keys.PROFILES, subscriber(4, goals="agents", remove="2026-11-20"))

    summary = await daily_run(ctx, "2026-11-19")  # type: ignore[arg-type]

    assert summary == {"profiles": 3, "created": 2, "skipped": 1}
    tasks = await backend.select(keys.DIGEST_TASKS, Query(order_by="user_id"))
    assert [t["user_id"] for t in tasks] == [subscriber(1)["user_id"], subscriber(3)["user_id"]]
    assert tasks[0]["request"]["user_info"]["news_interest"] == "AI policy"
    [skip] = [r for r in caplog.records if r.getMessage() == "profile skipped"]
    assert extra_fields(skip) == {
        "user_id": subscriber(2)["user_id"],
        "reason": "name: Input should be a valid string",
        "source_date": "2026-11-19",
    }
