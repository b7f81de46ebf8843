"""Fetch tasks: `POST /fetch-sources` fetches a date's sources once, ahead of its digests."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared import keys
from shared.models import (
    ACTIVE,
    DEFAULT_CATEGORIES,
    CallbackStatus,
    CallbackUrl,
    Categories,
    Day,
    TaskStatus,
    stamp,
    utcnow,
)
from shared.store import Backend, Cond, Row


class FetchRequest(BaseModel):
    """The body of `POST /fetch-sources`; validate with `context={"allow_private": bool}`."""

    model_config = ConfigDict(extra="ignore")

    source_date: Day
    callback_url: CallbackUrl = None
    categories: Categories = Field(default_factory=lambda: list(DEFAULT_CATEGORIES))


class FetchTask(BaseModel):
    model_config = ConfigDict(extra="ignore")

    task_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    source_date: str
    categories: list[str] = Field(default_factory=lambda: list(DEFAULT_CATEGORIES))
    status: TaskStatus = TaskStatus.PENDING
    message: str = "Fetch accepted"
    result: dict[str, Any] | None = None
    error: str | None = None
    error_code: str | None = None
    attempt: int = 0
    callback_url: str | None = None
    callback_status: CallbackStatus = CallbackStatus.NONE
    callback_attempts: int = 0
    callback_error: str | None = None
    delivery_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def status_view(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "status": self.status.value,
            "message": self.message,
            "source_date": self.source_date,
            "categories": self.categories,
            "attempts": self.attempt,
            "result": self.result,
            "error": self.error,
            "error_code": self.error_code,
            "callback_url": self.callback_url,
            "callback_status": self.callback_status.value,
            "created_at": stamp(self.created_at),
            "finished_at": stamp(self.finished_at) if self.finished_at else None,
        }


def _row(task: FetchTask) -> Row:
    row = task.model_dump(mode="json")
    for name in ("created_at", "updated_at", "started_at", "finished_at"):
        value = getattr(task, name)
        row[name] = stamp(value) if value else None
    return row


class FetchRepository:
    """Fetch tasks in the store; status writes are conditional like digest tasks'."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def create(self, task: FetchTask) -> bool:
        return await self.backend.insert(keys.FETCH_TASKS, _row(task))

    async def delete(self, task_id: str) -> None:
        await self.backend.delete(keys.FETCH_TASKS, {"task_id": task_id})

    async def get(self, task_id: str) -> FetchTask | None:
        row = await self.backend.get(keys.FETCH_TASKS, {"task_id": task_id})
        return FetchTask.model_validate(row) if row else None

    async def start(self, task: FetchTask) -> FetchTask | None:
        row = await self.backend.update(
            keys.FETCH_TASKS,
            {"task_id": task.task_id},
            {
                "status": TaskStatus.PROCESSING.value,
                "attempt": task.attempt + 1,
                "message": "Fetching sources",
                "started_at": stamp(task.started_at or utcnow()),
                "updated_at": stamp(),
            },
            [Cond("attempt", "eq", task.attempt), Cond("status", "in", [s.value for s in ACTIVE])],
        )
        return await self.get(task.task_id) if row else None

    async def finish(
        self,
        task: FetchTask,
        status: TaskStatus,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        error_code: str | None = None,
    ) -> FetchTask | None:
        callback = CallbackStatus.PENDING if task.callback_url else CallbackStatus.NONE
        row = await self.backend.update(
            keys.FETCH_TASKS,
            {"task_id": task.task_id},
            {
                "status": status.value,
                "message": "Sources fetched" if result else f"Fetch {status.value}: {error}",
                "result": result,
                "error": error,
                "error_code": error_code,
                "finished_at": stamp(),
                "updated_at": stamp(),
                "callback_status": callback.value,
                "delivery_id": str(uuid.uuid4()),
            },
            [
                Cond("attempt", "eq", task.attempt),
                Cond("status", "eq", TaskStatus.PROCESSING.value),
            ],
        )
        return await self.get(task.task_id) if row else None

    async def active(self) -> list[FetchTask]:
        rows = await self.backend.select(
            keys.FETCH_TASKS, [Cond("status", "in", [s.value for s in ACTIVE])], limit=1000
        )
        return [FetchTask.model_validate(row) for row in rows]

    async def undelivered(self) -> list[FetchTask]:
        rows = await self.backend.select(
            keys.FETCH_TASKS,
            [Cond("callback_status", "eq", CallbackStatus.PENDING.value)],
            limit=1000,
        )
        return [FetchTask.model_validate(row) for row in rows]

    async def record_callback(
        self, task_id: str, status: CallbackStatus, attempts: int, error: str | None
    ) -> None:
        await self.backend.update(
            keys.FETCH_TASKS,
            {"task_id": task_id},
            {
                "callback_status": status.value,
                "callback_attempts": attempts,
                "callback_error": error,
            },
            [Cond("callback_status", "eq", CallbackStatus.PENDING.value)],
        )
