"""Log lines about a task carry its id and attempt, whoever logs them."""

from __future__ import annotations

import asyncio
import json
import logging

from shared.logs import JsonFormatter, TaskContext, bind_task, unbind_task


def line(message: str, **extra: object) -> dict[str, object]:
    record = logging.LogRecord("paperboy.llm", logging.INFO, __file__, 1, message, (), None)
    record.__dict__.update(extra)
    TaskContext().filter(record)
    return json.loads(JsonFormatter().format(record))  # type: ignore[no-any-return]


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
