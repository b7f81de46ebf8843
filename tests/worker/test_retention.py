"""The daily clean-up removes what is expired and keeps the digests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from paperboy_worker.retention import clean_up
from shared import keys
from shared.models import DigestTask, stamp, utcnow
from shared.settings import Settings
from shared.store.sqlite import SqliteBackend
from shared.tasks import TaskRepository


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    backend = SqliteBackend(tmp_path / "store.db")
    await backend.open()
    yield {"settings": Settings(sources_retention_days=14), "backend": backend}
    await backend.close()


async def test_clean_up_removes_only_what_is_past_retention(ctx: dict[str, Any]) -> None:
    backend = ctx["backend"]
    long_ago = stamp(utcnow() - timedelta(days=20))
    recent = stamp(utcnow() - timedelta(hours=1))
    for key, created in (("old", long_ago), ("new", recent)):
        await backend.insert(
            keys.IDEMPOTENCY_KEYS,
            {"key": key, "request_hash": "h", "task_id": key, "created_at": created},
        )
    for day, fetched in (("2026-10-01", long_ago), ("2026-11-22", recent)):
        await backend.insert(
            keys.DAILY_SOURCES,
            {"source_date": day, "category": "cs.AI", "items": [], "fetched_at": fetched},
        )
    old_digest = DigestTask(task_id="d-old", created_at=utcnow() - timedelta(days=400))
    await TaskRepository(backend).create(old_digest)

    removed = await clean_up(ctx)  # type: ignore[arg-type]

    assert removed == {"idempotency_keys": 1, "daily_sources": 1, "fetch_tasks": 0}
    assert [r["key"] for r in await backend.select(keys.IDEMPOTENCY_KEYS)] == ["new"]
    assert [r["source_date"] for r in await backend.select(keys.DAILY_SOURCES)] == ["2026-11-22"]
    assert await backend.count(keys.DIGEST_TASKS) == 1
