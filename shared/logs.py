"""Structured logging: JSON lines in production, readable text locally."""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar, Token
from typing import Any

from shared.settings import Settings

# Fields a log call may pass in `extra=` that belong in the structured line.
CONTEXT_FIELDS = (
    "task_id",
    "attempt",
    "stage",
    "status",
    "worker_id",
    "error_code",
    "delivery_id",
    "attempts",
    "user_id",
    "llm_step",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "limiter_wait_s",
    "duration_s",
    "retry_after",
    "http_status",
    "reason",
    "item_id",
)


# The task a coroutine works for; asyncio tasks inherit it, so every line logged on behalf of a
# task (by the pipeline, the LLM writer, the store) carries its id and attempt.
_task: ContextVar[tuple[str, int] | None] = ContextVar("paperboy_task", default=None)


def bind_task(task_id: str, attempt: int) -> Token[tuple[str, int] | None]:
    return _task.set((task_id, attempt))


def unbind_task(token: Token[tuple[str, int] | None]) -> None:
    _task.reset(token)


class TaskContext(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        bound = _task.get()
        if bound is not None and not hasattr(record, "task_id"):
            record.task_id, record.attempt = bound
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update({f: getattr(record, f) for f in CONTEXT_FIELDS if hasattr(record, f)})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        context = " ".join(
            f"{f}={getattr(record, f)}" for f in CONTEXT_FIELDS if hasattr(record, f)
        )
        return f"{base} {context}" if context else base


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(TaskContext())
    logger = logging.getLogger("paperboy")
    logger.handlers[:] = [handler]
    logger.setLevel(settings.log_level.upper())
    logger.propagate = False
