"""The task model: requests, statuses and the stored task rows."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared import netguard

NOT_SPECIFIED = "Not specified"
ARXIV_CATEGORY = re.compile(r"^[a-z][a-z-]{0,15}(\.[A-Za-z][A-Za-z-]{0,15})?$")
DEFAULT_CATEGORIES = ("cs.AI", "cs.LG")


class TaskStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def active(self) -> bool:
        return not self.terminal


TERMINAL = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})
ACTIVE = frozenset({TaskStatus.PENDING, TaskStatus.PROCESSING})


class CallbackStatus(StrEnum):
    NONE = "none"
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Stage(StrEnum):
    """The pipeline's stage boundaries: where progress is written and cancellation is checked."""

    QUEUED = "queued"
    SOURCES = "sources"
    SHORTLIST = "shortlist"
    RANK = "rank"
    ANALYSE = "analyse"
    HIGHLIGHTS = "highlights"
    RENDER = "render"
    DONE = "done"


def utcnow() -> datetime:
    return datetime.now(UTC)


def stamp(moment: datetime | None = None) -> str:
    """A timestamp as the store keeps it: UTC, always with microseconds, so text order is time
    order in SQLite too."""
    return (moment or utcnow()).astimezone(UTC).isoformat(timespec="microseconds")


def parse_day(value: str) -> date:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("must be a date as YYYY-MM-DD")
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"is not a real date: {exc}") from exc
    if day > utcnow().date() + timedelta(days=1):
        raise ValueError("must not be in the future")
    return day


def _blank_to_default(value: object) -> object:
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "null"}):
        return NOT_SPECIFIED
    return value


def _arxiv_categories(value: list[str]) -> list[str]:
    for category in value:
        if not ARXIV_CATEGORY.fullmatch(category):
            raise ValueError(f"{category[:40]!r} is not an arXiv category such as cs.AI")
    return list(dict.fromkeys(value))


def _safe_callback(value: str | None, info: ValidationInfo) -> str | None:
    """Validate with `context={"allow_private": bool}` to apply the callback network policy."""
    if value is not None:
        allow_private = bool((info.context or {}).get("allow_private", False))
        netguard.check_url(value, allow_private=allow_private)
    return value


def _real_date(value: str | None) -> str | None:
    if value is not None:
        parse_day(value)
    return value


Categories = Annotated[
    list[StrictStr], Field(min_length=1, max_length=10), AfterValidator(_arxiv_categories)
]
CallbackUrl = Annotated[
    StrictStr | None, Field(max_length=netguard.MAX_URL_LENGTH), AfterValidator(_safe_callback)
]
Day = Annotated[StrictStr, AfterValidator(_real_date)]


class UserInfo(BaseModel):
    """The reader a digest is written for; relevance is measured against it."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    name: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    title: Annotated[StrictStr, Field(max_length=200)] = NOT_SPECIFIED
    goals: Annotated[StrictStr, Field(max_length=4000)] = NOT_SPECIFIED
    news_interest: Annotated[StrictStr | None, Field(max_length=500)] = None

    _defaults = field_validator("title", "goals", mode="before")(_blank_to_default)

    def query_text(self) -> str:
        """The profile text relevance is scored against; placeholders and blanks are left out."""
        parts = (self.goals, self.title, self.news_interest)
        return " ".join(p.strip() for p in parts if p and p.strip() and p.strip() != NOT_SPECIFIED)


class DigestSources(BaseModel):
    model_config = ConfigDict(extra="ignore")

    arxiv: StrictBool = True
    news_api: StrictBool | None = None


class DigestRequest(BaseModel):
    """The body of `POST /generate-digest`, the shape existing callers already send.

    Validate with `context={"allow_private": bool}` to apply the callback network policy.
    """

    model_config = ConfigDict(extra="ignore")

    user_info: UserInfo
    target_date: Day | None = None
    source_date: Day | None = None
    top_n_articles: Annotated[StrictInt | None, Field(ge=1, le=20)] = None
    top_n_news: Annotated[StrictInt | None, Field(ge=1, le=20)] = None
    callback_url: CallbackUrl = None
    categories: Categories = Field(default_factory=lambda: list(DEFAULT_CATEGORIES))
    digest_sources: DigestSources | None = None

    @model_validator(mode="after")
    def _some_source(self) -> Self:
        sources = self.digest_sources
        if sources is not None and not sources.arxiv and sources.news_api is False:
            raise ValueError("digest_sources switches off both arxiv and news_api")
        return self

    def effective_date(self) -> date:
        """The sources' date: `source_date`, else `target_date`, else yesterday (UTC)."""
        chosen = self.source_date or self.target_date
        return parse_day(chosen) if chosen else utcnow().date() - timedelta(days=1)


class Usage(BaseModel):
    llm_requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            llm_requests=self.llm_requests + other.llm_requests,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cost_usd=round(self.cost_usd + other.cost_usd, 6),
        )


class TaskRecord(BaseModel):
    """Every kind's fields: lifecycle, owning attempt, callback (kinds: shared/lifecycle.py)."""

    model_config = ConfigDict(extra="ignore")

    task_id: str
    status: TaskStatus = TaskStatus.PENDING
    message: str = "Task accepted"
    attempt: int = 0
    running: bool = False
    failures: int = 0
    interruptions: int = 0
    max_attempts: int = 5
    result: Any = None
    error: str | None = None
    error_code: str | None = None
    callback_url: str | None = None
    callback_status: CallbackStatus = CallbackStatus.NONE
    callback_attempts: int = 0
    callback_error: str | None = None
    delivery_id: str | None = None
    cancel_requested: bool = False
    worker_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def log_fields(self) -> dict[str, Any]:
        """What the "finished" log line says beyond the lifecycle."""
        return {}


class DigestTask(TaskRecord):
    """One row of `digest_tasks`: the source of truth for a digest."""

    stage: Stage = Stage.QUEUED
    progress: float = 0.0
    request: dict[str, Any] = Field(default_factory=dict)
    user_id: str | None = None
    source_date: str | None = None
    result: str | None = None
    articles: list[dict[str, Any]] | None = None
    degraded: bool = False
    usage: Usage = Field(default_factory=Usage)

    def log_fields(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.usage.prompt_tokens,
            "completion_tokens": self.usage.completion_tokens,
            "cost_usd": self.usage.cost_usd,
        }

    @property
    def digest_request(self) -> DigestRequest:
        return DigestRequest.model_validate(self.request, context={"allow_private": True})

    def status_view(self) -> dict[str, Any]:
        """The `GET /digest-status` body."""
        return {
            "task_id": self.task_id,
            "status": self.status.value,
            "message": self.message,
            "stage": self.stage.value,
            "progress": self.progress,
            "attempts": self.attempt,
            "max_attempts": self.max_attempts,
            "failures": self.failures,
            "interruptions": self.interruptions,
            "result": self.result,
            "articles": self.articles,
            "error": self.error,
            "error_code": self.error_code,
            "callback_url": self.callback_url,
            "callback_status": self.callback_status.value,
            "callback_attempts": self.callback_attempts,
            "user_id": self.user_id,
            "worker_id": self.worker_id,
            "source_date": self.source_date,
            "created_at": self.created_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "usage": self.usage.model_dump(),
            "degraded": self.degraded,
        }
