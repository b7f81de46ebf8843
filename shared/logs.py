"""Structured logging: JSON lines in production, readable text locally."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from contextvars import ContextVar, Token
from datetime import date, datetime, time
from enum import Enum
from typing import Any

from shared.settings import Settings

# What every LogRecord carries by itself; anything else on a record came from `extra=` (or
# from TaskContext) and is written out, whatever its name.
STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", logging.INFO, "", 0, "", (), None).__dict__
) | {"message", "asctime", "taskName"}
# The JSON line's own keys; an extra field of the same name is written beside them.
LINE_KEYS = frozenset({"ts", "level", "logger", "msg", "exc"})


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's extra fields, in the order they were given, as JSON-safe values."""
    return {
        name: json_safe(value)
        for name, value in record.__dict__.items()
        if name not in STANDARD_ATTRIBUTES
    }


def json_safe(value: object) -> Any:
    """`value` as something `json.dumps` writes as standard JSON; anything unknown as its str."""
    if isinstance(value, Enum):
        return json_safe(value.value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    return str(value)


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
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        for name, value in extra_fields(record).items():
            line[f"extra_{name}" if name in LINE_KEYS else name] = value
        return json.dumps(line, allow_nan=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        context = " ".join(f"{k}={_text(v)}" for k, v in extra_fields(record).items())
        return f"{base} {context}" if context else base


def _text(value: Any) -> str:
    # Bare words stay bare; anything with spaces, quotes or structure is quoted as JSON so a
    # reader (or a grep) can tell where one field ends.
    if isinstance(value, str) and value and not any(c.isspace() or c in '"=' for c in value):
        return value
    return json.dumps(value, ensure_ascii=False)


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
