"""Fetch tasks: `POST /fetch-sources` fetches a date's sources once, ahead of its digests."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.models import (
    DEFAULT_CATEGORIES,
    CallbackUrl,
    Categories,
    Day,
    TaskRecord,
    stamp,
)


class FetchRequest(BaseModel):
    """The body of `POST /fetch-sources`; validate with `context={"allow_private": bool}`."""

    model_config = ConfigDict(extra="ignore")

    source_date: Day
    callback_url: CallbackUrl = None
    categories: Categories = Field(default_factory=lambda: list(DEFAULT_CATEGORIES))


class FetchTask(TaskRecord):
    """One row of `fetch_tasks`; its result is the counts of what was fetched."""

    task_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    message: str = "Fetch accepted"
    source_date: str
    categories: list[str] = Field(default_factory=lambda: list(DEFAULT_CATEGORIES))
    result: dict[str, Any] | None = None

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
