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
from shared.store import Cond
from shared.store.sqlite import SqliteBackend

TIMEOUT = 0.5
ROW = {"user_id": "u-1", "name": "Ada", "created_at": "2026-11-22", "updated_at": "2026-11-22"}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteBackend]:
    backend = SqliteBackend(tmp_path / "store.db", timeout=TIMEOUT)
    await backend.open()
    yield backend
    await backend.close()


@pytest.fixture
def write_lock(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    yield conn
    conn.execute("ROLLBACK")
    conn.close()


async def test_a_write_waits_at_most_the_timeout(
    store: SqliteBackend, write_lock: sqlite3.Connection
) -> None:
    started = time.monotonic()

    with pytest.raises(StoreError, match="locked"):
        await store.insert(keys.PROFILES, ROW)

    assert time.monotonic() - started < TIMEOUT * 3


async def test_reads_go_on_while_a_write_waits(
    store: SqliteBackend, write_lock: sqlite3.Connection
) -> None:
    stuck = asyncio.create_task(store.insert(keys.PROFILES, ROW))
    reads = 0
    while not stuck.done():
        assert (
            await asyncio.wait_for(store.get(keys.PROFILES, {"user_id": "u-1"}), TIMEOUT / 2)
            is None
        )
        reads += 1

    assert reads > 5
    with pytest.raises(StoreError):
        await stuck


async def test_a_conditional_write_has_one_winner_across_connections(store: SqliteBackend) -> None:
    await store.insert(keys.DIGEST_TASKS, task_row("t-1"))

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
    stored = await store.get(keys.DIGEST_TASKS, {"task_id": "t-1"})
    assert stored is not None
    assert stored["worker_id"] == winners[0]["worker_id"]


def task_row(task_id: str) -> dict[str, object]:
    return {"task_id": task_id, "status": "pending", "created_at": "x", "updated_at": "x"}
