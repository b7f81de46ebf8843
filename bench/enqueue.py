"""Figure 1: accepting work. POST /generate-digest through one uvicorn process (SQLite store,
Redis queue) against bare arq `enqueue_job` from one process, at the same concurrency.

No worker runs: both sides only enqueue, so neither competes with job execution for the two
cores. The API is loaded by wrk (Debian's build, pinned: `bench.servers.WRK_VERSION`), one
thread with one keep-alive connection per concurrent request, for a fixed time after a one-second
untimed warm-up; its latencies are wrk's, and its own CPU is read from the kernel as it exits.
A Python client spent more CPU per request than the API did, so it measured itself. Bare arq
sends a fixed number of enqueues after a short warm-up, timed with `time.perf_counter`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from arq.connections import RedisSettings, create_pool

from bench.bare import QUEUE as BARE_QUEUE
from bench.servers import (
    API_KEY,
    Bench,
    Lab,
    WrkRun,
    paperboy_env,
    run_wrk,
    start_api,
    wrk_version,
)
from bench.stats import percentile
from bench.tasks import digest_body

LEVELS = (1, 16, 64)
REQUESTS = 2_000
WARMUP = 100
API_SECONDS = 5
WARMUP_SECONDS = 1


@dataclass
class Level:
    rate: float  # requests (or enqueues) per second
    p50_ms: float
    p99_ms: float
    cpu_share: float = float("nan")  # CPU seconds of the serving process per wall second
    loop_cpu_share: float = float("nan")  # of which its event-loop thread
    client_cpu_share: float = float("nan")  # CPU of the load generator per wall second


@dataclass
class Rep:
    api: dict[int, Level] = field(default_factory=dict)
    bare: dict[int, Level] = field(default_factory=dict)


@dataclass
class Result:
    reps: list[Rep] = field(default_factory=list)
    requests: int = REQUESTS  # bare arq's enqueues per level
    api_seconds: int = API_SECONDS  # wrk's run per level against the API
    levels: tuple[int, ...] = LEVELS
    generator: str = ""


async def _drive(
    concurrency: int, total: int, one: Callable[[], Awaitable[None]]
) -> tuple[list[float], float, float]:
    """Run `one` `total` times, `concurrency` at once: latencies (s), wall time, client CPU."""
    latencies: list[float] = []
    left = total

    async def lane() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            began = time.perf_counter()
            await one()
            latencies.append(time.perf_counter() - began)

    cpu0 = time.process_time()
    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(lane() for _ in range(concurrency))), timeout=300)
    elapsed = time.perf_counter() - start
    return latencies, elapsed, time.process_time() - cpu0


def _level(latencies: list[float], elapsed: float, client_cpu: float) -> Level:
    return Level(
        rate=len(latencies) / elapsed,
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        client_cpu_share=client_cpu / elapsed,
    )


async def _api_level(
    lab: Lab,
    url: str,
    callback_url: str,
    api_cpu: Callable[[], tuple[float, float]],
    concurrency: int,
) -> Level:
    body = json.dumps(digest_body(top_n=1, callback_url=callback_url)).encode()
    headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
    target = url + "/generate-digest"

    def load(seconds: int) -> WrkRun:
        run = run_wrk(lab, target, body, headers, concurrency, seconds)
        if run.errors:
            raise RuntimeError(f"wrk: {run.errors} failed requests of {run.requests}")
        return run

    await asyncio.to_thread(load, WARMUP_SECONDS)  # opens the connections, warms the API
    loop0, other0 = api_cpu()
    run = await asyncio.to_thread(load, API_SECONDS)
    loop1, other1 = api_cpu()
    return Level(
        rate=run.requests / run.seconds,
        p50_ms=run.p50_ms,
        p99_ms=run.p99_ms,
        cpu_share=(loop1 + other1 - loop0 - other0) / run.seconds,
        loop_cpu_share=(loop1 - loop0) / run.seconds,
        client_cpu_share=run.cpu_seconds / run.seconds,
    )


async def _bare_level(port: int, concurrency: int) -> Level:
    pool = await create_pool(
        RedisSettings(host="127.0.0.1", port=port), default_queue_name=BARE_QUEUE
    )
    try:

        async def enqueue() -> None:
            if await pool.enqueue_job("noop") is None:
                raise RuntimeError("bare enqueue_job refused a fresh job id")

        await _drive(concurrency, max(WARMUP, concurrency * 2), enqueue)
        latencies, elapsed, client_cpu = await _drive(concurrency, REQUESTS, enqueue)
        level = _level(latencies, elapsed, client_cpu)
        level.cpu_share = client_cpu / elapsed  # the enqueuing process is the client itself
        return level
    finally:
        await pool.aclose()


async def run(bench: Bench, reps: int, log: Callable[[str], Any]) -> Result:
    result = Result(generator=wrk_version())
    bench.redis.flush()
    env = paperboy_env(bench.redis.url(), bench.sqlite_path("enqueue"))
    api, url = start_api(bench.lab, env)
    try:
        for rep in range(reps):
            current = Rep()
            for concurrency in LEVELS:
                bench.redis.flush()
                current.bare[concurrency] = await _bare_level(bench.redis.port, concurrency)
                bench.redis.flush()
                current.api[concurrency] = await _api_level(
                    bench.lab, url, bench.receiver.url, api.thread_cpu, concurrency
                )
                log(
                    f"  rep {rep + 1} c={concurrency}: api {current.api[concurrency].rate:,.0f}/s "
                    f"p99 {current.api[concurrency].p99_ms:.1f} ms, "
                    f"bare {current.bare[concurrency].rate:,.0f}/s"
                )
            result.reps.append(current)
    finally:
        bench.lab.stop(api)
        bench.redis.flush()
    return result
