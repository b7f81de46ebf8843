"""The daily clean-up: what the store no longer needs to keep."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from paperboy_worker.context import WorkerContext
from shared import keys
from shared.models import TERMINAL, stamp, utcnow
from shared.store import Cond, Query
from shared.store.base import TABLES

log = logging.getLogger("paperboy.retention")


async def clean_up(ctx: WorkerContext) -> dict[str, int]:
    """Expired idempotency keys, and shared sources and finished fetch tasks past retention.

    Digest tasks stay: they are the record of what was delivered.
    """
    settings = ctx["settings"]
    now = utcnow()
    idempotency_cutoff = now - timedelta(seconds=settings.idempotency_ttl_seconds)
    sources_cutoff = now - timedelta(days=settings.sources_retention_days)
    finished = Cond("status", "in", [s.value for s in TERMINAL])
    removed = {
        "idempotency_keys": await _delete(
            ctx, keys.IDEMPOTENCY_KEYS, "created_at", idempotency_cutoff
        ),
        "daily_sources": await _delete(ctx, keys.DAILY_SOURCES, "fetched_at", sources_cutoff),
        "fetch_tasks": await _delete(
            ctx, keys.FETCH_TASKS, "created_at", sources_cutoff, [finished]
        ),
    }
    log.info("retention clean-up", extra={"removed": removed})
    return removed


async def _delete(
    ctx: WorkerContext, table: str, column: str, before: datetime, where: Sequence[Cond] = ()
) -> int:
    backend = ctx["backend"]
    key = TABLES[table].key
    rows = await backend.select(
        table, Query([Cond(column, "lt", stamp(before)), *where], columns=list(key), limit=10_000)
    )
    for row in rows:
        await backend.delete(table, {column: row[column] for column in key})
    return len(rows)
