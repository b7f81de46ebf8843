"""The SQLite store under a held lock: a bounded wait, and unrelated calls that go on."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from shared import keys
from shared.errors import StoreError
from shared.models import DigestTask
from shared.store import Cond
from shared.store.sqlite import SqliteBackend
from shared.tasks import TaskRepository

TIMEOUT = 0.5


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteBackend]:
    backend = SqliteBackend(tmp_path / "store.db", timeout=TIMEOUT)
    await backend.open()
    yield backend
    await backend.close()


@pytest.fixture
def tasks(store: SqliteBackend) -> TaskRepository:
    return TaskRepository(store)


@pytest.fixture
def write_lock(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    yield conn
    conn.execute("ROLLBACK")
    conn.close()


async def test_a_write_waits_at_most_the_timeout(
    tasks: TaskRepository, write_lock: sqlite3.Connection
) -> None:
    started = time.monotonic()

    with pytest.raises(StoreError, match="locked"):
        await tasks.create(DigestTask(task_id="t-1"))

    assert time.monotonic() - started < TIMEOUT * 3


async def test_reads_go_on_while_a_write_waits(
    tasks: TaskRepository, write_lock: sqlite3.Connection
) -> None:
    stuck = asyncio.create_task(tasks.create(DigestTask(task_id="t-1")))
    reads = 0
    while not stuck.done():
        assert await asyncio.wait_for(tasks.get("t-2"), TIMEOUT / 2) is None
        reads += 1

    assert reads > 5
    with pytest.raises(StoreError):
        await stuck


async def test_a_conditional_write_has_one_winner_across_connections(
    store: SqliteBackend, tasks: TaskRepository
) -> None:
    await tasks.create(DigestTask(task_id="t-1"))

    claims = await asyncio.gather(
        *(
            store.update(
                keys.DIGEST_TASKS,
                {"task_id": "t-1"},
                {"attempt": 1, "worker_id": f"w-{i}"},
                [Cond("attempt", "eq", 0)],
            )
            for i in range(20)
        )
    )

    winners = [row for row in claims if row is not None]
    assert len(winners) == 1
    stored = await tasks.get("t-1")
    assert stored is not None
    assert stored.worker_id == winners[0]["worker_id"]
