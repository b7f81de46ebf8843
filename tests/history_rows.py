"""Rows for the dashboard's history: digest tasks and email deliveries on chosen days."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shared import keys
from shared.models import DigestTask, TaskStatus, Usage, stamp
from shared.store import Backend
from shared.tasks import TaskRepository


def drop_deliveries_table(path: Path) -> None:
    """The store as the live project has it before the deliveries migration runs."""
    connection = sqlite3.connect(path)
    try:
        connection.execute(f"DROP TABLE {keys.EMAIL_DELIVERIES}")
    finally:
        connection.close()


def midnight(moment: datetime) -> datetime:
    return datetime.combine(moment.astimezone(UTC).date(), datetime.min.time(), UTC)


async def add_digest(
    backend: Backend,
    task_id: str,
    status: TaskStatus,
    finished: datetime | None,
    cost: float = 0.0,
    created: datetime | None = None,
) -> None:
    created = created or (finished or datetime.now(UTC)) - timedelta(minutes=5)
    task = DigestTask(
        task_id=task_id,
        status=status,
        created_at=created,
        updated_at=finished or created,
        finished_at=finished,
        usage=Usage(llm_requests=3, cost_usd=cost),
    )
    assert await TaskRepository(backend).create(task)


async def add_delivery(
    backend: Backend,
    delivery_key: str,
    state: str,
    updated: datetime,
    *,
    kind: str = "digest",
    email: str = "ada.lovelace@example.com",
    source_date: str | None = None,
    sent: datetime | None = None,
    error: str | None = None,
    attempts: int = 1,
) -> None:
    row = {
        "delivery_key": delivery_key,
        "kind": kind,
        "user_id": f"user-{delivery_key}",
        "email": email,
        "source_date": source_date,
        "state": state,
        "attempts": attempts,
        "error": error,
        "sent_at": stamp(sent) if sent else None,
        "created_at": stamp(updated - timedelta(minutes=1)),
        "updated_at": stamp(updated),
    }
    assert await backend.insert(keys.EMAIL_DELIVERIES, row)


async def add_fortnight(backend: Backend, now: datetime) -> None:
    """A plausible two weeks for a screenshot: a few digests and emails a day, costs varying,
    one quiet day, and today's run half-way through with a failure and an ambiguous send."""
    today = midnight(now)
    for back in range(14):
        if back == 9:
            continue  # a quiet day shows as zero
        day = today - timedelta(days=back) + timedelta(hours=6)
        done = 4 + (back * 5) % 7
        failed = back % 3 == 0
        for n in range(done + failed):
            status = TaskStatus.FAILED if n == done else TaskStatus.COMPLETED
            cost = 0.004 + 0.001 * ((back + n) % 5)
            await add_digest(backend, f"d{back}-{n}", status, day + timedelta(minutes=n), cost)
            state = "failed" if n == done else "sent"
            if back == 0 and n == 1:
                state = "ambiguous"
            if back == 0 and n == 2:
                state = "sending"
            await add_delivery(
                backend,
                f"e{back}-{n}",
                state,
                day + timedelta(minutes=n + 2),
                email=f"reader{n}@example.org",
                source_date=f"{(day - timedelta(days=1)).date()}",
                sent=day + timedelta(minutes=n + 2) if state == "sent" else None,
                error="Resend answered 422: invalid recipient" if state == "failed" else None,
                attempts=1 + (state != "sent"),
            )
