"""Log lines about a task carry its id and attempt, whoever logs them."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from paperboy_worker.retention import clean_up
from shared.logs import JsonFormatter, TaskContext, TextFormatter, bind_task, unbind_task
from shared.settings import Settings
from shared.store.sqlite import SqliteBackend


def record(message: str, **extra: object) -> logging.LogRecord:
    """A record as `logger.info(message, extra=extra)` makes it, after the task filter."""
    made = logging.getLogger("paperboy.llm").makeRecord(
        "paperboy.llm", logging.INFO, __file__, 1, message, (), None, extra=extra
    )
    TaskContext().filter(made)
    return made


def line(message: str, **extra: object) -> dict[str, Any]:
    return json.loads(JsonFormatter().format(record(message, **extra)))  # type: ignore[no-any-return]


def refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not standard JSON")


async def test_lines_logged_inside_an_attempt_carry_the_task() -> None:
    token = bind_task("t-1", 3)
    try:
        inside = line("ranked", llm_step="paperboy_ranking")
        in_child = await asyncio.create_task(asyncio.to_thread(line, "analysed"))
    finally:
        unbind_task(token)
    outside = line("idle")

    assert inside["task_id"] == "t-1"
    assert inside["attempt"] == 3
    assert inside["llm_step"] == "paperboy_ranking"
    assert in_child["task_id"] == "t-1"
    assert "task_id" not in outside


def test_an_explicit_task_wins_over_the_bound_one() -> None:
    token = bind_task("t-1", 1)
    try:
        explicit = line("callback", task_id="t-2", attempt=7)
    finally:
        unbind_task(token)

    assert (explicit["task_id"], explicit["attempt"]) == ("t-2", 7)


class Colour(Enum):
    RED = "red"


def test_every_extra_field_is_written() -> None:
    # limiter and client were among the fields the fixed list dropped.
    written = line("llm rate limiter held", limiter="llm", retry_after=1.5, client="10.0.0.1")

    assert written["limiter"] == "llm"
    assert written["retry_after"] == 1.5
    assert written["client"] == "10.0.0.1"
    assert written["msg"] == "llm rate limiter held"


def test_the_record_s_own_attributes_are_not_written() -> None:
    written = line("plain")

    assert set(written) == {"ts", "level", "logger", "msg"}


def test_values_are_written_as_standard_json() -> None:
    when = datetime(2026, 11, 20, 13, 0, tzinfo=UTC)
    written_text = JsonFormatter().format(
        record(
            "odd values",
            when=when,
            colour=Colour.RED,
            ids={"b", "a"},
            removed={1: 2, "fetch_tasks": (3,)},
            ratio=float("nan"),
            thing=object(),
        )
    )
    written = json.loads(written_text, parse_constant=refuse_constant)

    assert written["when"] == "2026-11-20T13:00:00+00:00"
    assert written["colour"] == "red"
    assert sorted(written["ids"]) == ["a", "b"]
    assert written["removed"] == {"1": 2, "fetch_tasks": [3]}
    assert written["ratio"] == "nan"
    assert written["thing"].startswith("<object object")


def test_a_field_named_like_a_line_key_is_kept_beside_it() -> None:
    written = line("clash", level="deep", logger="mine")

    assert written["level"] == "info"
    assert written["extra_level"] == "deep"
    assert written["extra_logger"] == "mine"


def test_the_text_format_writes_every_field_and_quotes_what_has_spaces() -> None:
    text = TextFormatter("%(message)s").format(
        record("daily run queued digests", queued=3, source_date="2026-11-19", note="two words")
    )

    assert text == 'daily run queued digests queued=3 source_date=2026-11-19 note="two words"'


async def test_the_retention_job_logs_its_counts_as_fields(tmp_path: Path) -> None:
    backend = SqliteBackend(tmp_path / "store.db")
    await backend.open()
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda rec: lines.append(JsonFormatter().format(rec))  # type: ignore[method-assign]
    logger = logging.getLogger("paperboy.retention")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        await clean_up({"settings": Settings(), "backend": backend})  # type: ignore[typeddict-item]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        await backend.close()

    [written] = [json.loads(text) for text in lines]
    assert written["removed"] == {"idempotency_keys": 0, "daily_sources": 0, "fetch_tasks": 0}
    assert "status" not in written
