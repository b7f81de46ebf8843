"""Bare arq, the yardstick: `arq bench.bare.WorkerSettings` with arq's defaults except the poll
delay (and the queue name), and jobs that do nothing but what a measurement needs."""

from __future__ import annotations

import os
import time
from typing import Any

from arq.connections import RedisSettings

QUEUE = "bench:bare"


async def noop(ctx: dict[str, Any]) -> None:
    """The cheapest job arq can run."""


async def stamp(ctx: dict[str, Any], key: str) -> None:
    """First line: the time the job started, pushed to `key` for the waiting benchmark."""
    started = time.time()
    await ctx["redis"].lpush(key, repr(started))


async def on_startup(ctx: dict[str, Any]) -> None:
    # Start-up is done and the poll loop is next: tell the benchmark this worker is ready.
    await ctx["redis"].set(f"{QUEUE}:ready:{os.getpid()}", "1", ex=3600)


class WorkerSettings:
    functions = [noop, stamp]
    queue_name = QUEUE
    on_startup = on_startup
    redis_settings = RedisSettings(
        host="127.0.0.1",
        port=int(os.environ.get("BENCH_REDIS_PORT", "6379")),
        database=int(os.environ.get("BENCH_REDIS_DB", "0")),
    )
    poll_delay = float(os.environ.get("BENCH_POLL_DELAY", "0.5"))
    max_jobs = int(os.environ.get("BENCH_MAX_JOBS", "10"))
