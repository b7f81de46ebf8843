"""Digest tasks made the way the API makes them (row first, then the arq job), and cheap reads of
the store for the benchmark to watch them."""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from arq.connections import ArqRedis

from shared import keys, queue
from shared.models import DigestRequest, DigestTask
from shared.settings import Settings
from shared.store import open_backend
from shared.tasks import TaskRepository

SOURCE_DATE = "2026-11-22"  # the date of the bundled sample feed


def digest_body(top_n: int = 1, callback_url: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user_info": {
            "name": "Ada Researcher",
            "title": "ML engineer",
            "goals": "robust federated learning and retrieval-augmented generation",
        },
        "source_date": SOURCE_DATE,
        "top_n_articles": top_n,
    }
    if callback_url:
        body["callback_url"] = callback_url
    return body


def bench_settings(redis_url: str, sqlite_path: Path) -> Settings:
    return Settings(
        redis_url=redis_url,
        sqlite_path=sqlite_path,
        state_backend="sqlite",
        callback_allow_private_networks=True,
        _env_file=None,
    )


@dataclass
class Producer:
    """Writes task rows and enqueues their jobs from the benchmark process, as the API would."""

    settings: Settings
    repo: TaskRepository
    redis: ArqRedis

    @classmethod
    async def open(cls, redis_url: str, sqlite_path: Path) -> Producer:
        settings = bench_settings(redis_url, sqlite_path)
        backend = await open_backend(settings)
        return cls(settings, TaskRepository(backend), await queue.open_pool(settings, retries=3))

    async def close(self) -> None:
        await self.redis.aclose()
        await self.repo.backend.close()

    async def create(self, body: dict[str, Any]) -> str:
        digest = DigestRequest.model_validate(body, context={"allow_private": True})
        task = DigestTask(
            task_id=str(uuid.uuid4()),
            request=digest.model_dump(mode="json"),
            callback_url=digest.callback_url,
            source_date=digest.effective_date().isoformat(),
            max_attempts=self.settings.digest_max_tries,
        )
        await self.repo.create(task)
        return task.task_id

    async def enqueue(self, task_id: str) -> None:
        if not await queue.enqueue_digest(self.redis, task_id):
            raise RuntimeError(f"task {task_id} was already queued")


class StoreReader:
    """Read-only SQL on the store file (WAL: readers never block the workers' writes)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        self.conn.row_factory = sqlite3.Row

    def close(self) -> None:
        self.conn.close()

    def count(self, where: str = "1", *params: Any) -> int:
        row = self.conn.execute(
            f"SELECT count(*) FROM {keys.DIGEST_TASKS} WHERE {where}", params
        ).fetchone()
        return int(row[0])

    def row(self, task_id: str) -> sqlite3.Row | None:
        cursor = self.conn.execute(
            f"SELECT * FROM {keys.DIGEST_TASKS} WHERE task_id = ?", (task_id,)
        )
        found: sqlite3.Row | None = cursor.fetchone()
        return found

    def max_finished(self) -> float:
        row = self.conn.execute(f"SELECT max(finished_at) FROM {keys.DIGEST_TASKS}").fetchone()
        return datetime.fromisoformat(row[0]).timestamp()


def timestamp(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()
