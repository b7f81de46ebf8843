"""Figure 2: pickup latency on an idle worker, and what the polling costs Redis while idle.

Paperboy: a real digest job on `python -m paperboy_worker` with the shipped settings: the idle
worker blocks on the wake list that the enqueue pushes to (WORKER_IDLE_POLL_SECONDS 5 as the
safety net), so it is woken rather than finding the job at a poll. The job's first act is to
claim its task, which writes `started_at` (wall clock) into the store; latency = `started_at` -
the wall time just before `enqueue_job`. That includes one store read before the stamp, so it
errs on the slow side by a fraction of a millisecond. One job at a time: the next is enqueued
once the previous digest finished, after a random pause (uniform over one poll period) so
enqueues land at every phase of the poll loop.

Bare arq: a job whose first line pushes `time.time()` to a list the benchmark BLPOPs, one at a
time with the same random pauses at poll delay 0.01 s. At arq's default 0.5 s, one-at-a-time
samples would cost half a second each, so jobs arrive as a Poisson stream (mean spacing 50 ms)
instead; a poll then claims several jobs in turn, which adds well under a millisecond each.

Idle command rate: each subject gets its own redis-server (none, one Paperboy worker, bare arq at
0.01 s, bare arq at 0.5 s) and the `total_commands_processed` deltas over the same 20 s windows
are compared with the server that has no worker (whose delta is the INFO calls themselves). The
Paperboy worker is the whole process: its heartbeat, arq's health check and its periodic sweeps
(tasks in the worker: the lease reaper every 10 s, the reconciler every 60 s) are in its count.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool

from bench.bare import QUEUE as BARE_QUEUE
from bench.servers import (
    ONE_ENTRY_FEED,
    Bench,
    RedisServer,
    paperboy_env,
    start_bare_worker,
    start_redis,
    start_worker,
    worker_ready,
)
from bench.stats import percentile
from bench.tasks import Producer, StoreReader, digest_body, timestamp

SAMPLES = 200
DEFAULT_POLL_SAMPLES = 100
DEFAULT_POLL_SPACING = 0.05
IDLE_WINDOW = 20.0
SHIPPED_POLL_DELAY = 0.01
ARQ_DEFAULT_POLL_DELAY = 0.5


@dataclass
class Latency:
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    samples: int

    @classmethod
    def of(cls, seconds: list[float]) -> Latency:
        ms = [s * 1000 for s in seconds]
        return cls(percentile(ms, 50), percentile(ms, 95), percentile(ms, 99), max(ms), len(ms))


@dataclass
class Rep:
    paperboy: Latency
    bare_fast: Latency
    bare_default: Latency


@dataclass
class Idle:
    paperboy: float  # commands per second above the no-worker baseline
    bare_fast: float
    bare_default: float
    baseline: float  # the baseline server's own rate (the INFO calls)


@dataclass
class Result:
    reps: list[Rep] = field(default_factory=list)
    idle: list[Idle] = field(default_factory=list)
    paperboy_commands: dict[str, float] = field(default_factory=dict)  # per second, by command
    bare_commands: dict[str, float] = field(default_factory=dict)
    window: float = IDLE_WINDOW


async def _wait(check: Callable[[], Any], limit: float, what: str, interval: float) -> Any:
    deadline = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {limit:g}s")
        await asyncio.sleep(interval)


async def _paperboy_samples(bench: Bench, name: str) -> list[float]:
    bench.redis.flush()
    sqlite_path = bench.sqlite_path(name)
    env = paperboy_env(bench.redis.url(), sqlite_path, arxiv_sample_path=ONE_ENTRY_FEED)
    producer = await Producer.open(bench.redis.url(), sqlite_path)
    worker = start_worker(bench.lab, env)
    reader = StoreReader(sqlite_path)
    try:
        worker_ready(bench.redis, worker)
        await asyncio.sleep(0.5)
        latencies: list[float] = []
        for _ in range(SAMPLES):
            task_id = await producer.create(digest_body(top_n=1))
            await asyncio.sleep(random.uniform(0, SHIPPED_POLL_DELAY))
            enqueued = time.time()
            await producer.enqueue(task_id)

            def started(task_id: str = task_id) -> str | None:
                row = reader.row(task_id)
                return row["started_at"] if row is not None else None

            def completed(task_id: str = task_id) -> int:
                return reader.count("task_id = ? AND status = 'completed'", task_id)

            latencies.append(timestamp(await _wait(started, 10, "pickup", 0.001)) - enqueued)
            await _wait(completed, 10, "digest completion", 0.002)
        return latencies
    finally:
        reader.close()
        bench.lab.stop(worker)
        await producer.close()


async def _bare_one_at_a_time(bench: Bench, pool: ArqRedis, poll_delay: float) -> list[float]:
    latencies: list[float] = []
    for i in range(SAMPLES):
        key = f"bench:stamp:{i}"
        await asyncio.sleep(random.uniform(0, poll_delay))
        enqueued = time.time()
        await pool.enqueue_job("stamp", key)
        popped = await pool.blpop([key], timeout=10)  # type: ignore[misc]
        if popped is None:
            raise TimeoutError("bare arq job did not start within 10s")
        latencies.append(float(popped[1]) - enqueued)
    return latencies


async def _bare_stream(pool: ArqRedis) -> list[float]:
    enqueued: dict[str, float] = {}
    for i in range(DEFAULT_POLL_SAMPLES):
        await asyncio.sleep(random.expovariate(1 / DEFAULT_POLL_SPACING))
        key = f"bench:stamp:{i}"
        enqueued[key] = time.time()
        await pool.enqueue_job("stamp", key)
    latencies = []
    for key, at in enqueued.items():
        popped = await pool.blpop([key], timeout=10)  # type: ignore[misc]
        if popped is None:
            raise TimeoutError("bare arq job did not start within 10s")
        latencies.append(float(popped[1]) - at)
    return latencies


async def _bare_samples(bench: Bench, poll_delay: float) -> list[float]:
    bench.redis.flush()
    worker = start_bare_worker(bench.lab, bench.redis, poll_delay=poll_delay)
    pool = await create_pool(
        RedisSettings(host="127.0.0.1", port=bench.redis.port), default_queue_name=BARE_QUEUE
    )
    try:
        await asyncio.sleep(0.5)
        if poll_delay == ARQ_DEFAULT_POLL_DELAY:
            return await _bare_stream(pool)
        return await _bare_one_at_a_time(bench, pool, poll_delay)
    finally:
        await pool.aclose()
        bench.lab.stop(worker)


def _rates(
    servers: dict[str, RedisServer], window: float
) -> tuple[dict[str, float], dict[str, dict[str, int]]]:
    before = {name: s.commands_processed() for name, s in servers.items()}
    stats_before = {name: s.commandstats() for name, s in servers.items()}
    time.sleep(window)
    after = {name: s.commands_processed() for name, s in servers.items()}
    stats_after = {name: s.commandstats() for name, s in servers.items()}
    rates = {name: (after[name] - before[name]) / window for name in servers}
    calls = {
        name: {
            cmd: stats_after[name][cmd] - stats_before[name].get(cmd, 0)
            for cmd in stats_after[name]
        }
        for name in servers
    }
    return rates, calls


async def _idle(bench: Bench, reps: int, result: Result, log: Callable[[str], Any]) -> None:
    lab = bench.lab
    servers = {
        name: start_redis(lab, f"redis-idle-{name}") for name in ("none", "pb", "fast", "slow")
    }
    sqlite_path = bench.sqlite_path("idle")
    env = paperboy_env(servers["pb"].url(), sqlite_path, arxiv_sample_path=ONE_ENTRY_FEED)
    worker = start_worker(lab, env)
    fast = start_bare_worker(lab, servers["fast"], poll_delay=SHIPPED_POLL_DELAY)
    slow = start_bare_worker(lab, servers["slow"], poll_delay=ARQ_DEFAULT_POLL_DELAY)
    try:
        worker_ready(servers["pb"], worker)
        await asyncio.sleep(2)  # past start-up
        totals: dict[str, dict[str, int]] = {"pb": {}, "fast": {}}
        for rep in range(reps):
            rates, calls = await asyncio.to_thread(_rates, servers, IDLE_WINDOW)
            base = rates["none"]
            idle = Idle(rates["pb"] - base, rates["fast"] - base, rates["slow"] - base, base)
            result.idle.append(idle)
            for name in totals:
                for cmd, n in calls[name].items():
                    totals[name][cmd] = totals[name].get(cmd, 0) + n
                # The INFO calls of the measurement itself are in the baseline.
            log(
                f"  idle rep {rep + 1}: paperboy {idle.paperboy:.1f}/s, bare 0.01 "
                f"{idle.bare_fast:.1f}/s, bare 0.5 {idle.bare_default:.1f}/s"
            )
        seconds = IDLE_WINDOW * reps
        result.paperboy_commands = {
            cmd: n / seconds for cmd, n in sorted(totals["pb"].items(), key=lambda kv: -kv[1]) if n
        }
        result.bare_commands = {
            cmd: n / seconds
            for cmd, n in sorted(totals["fast"].items(), key=lambda kv: -kv[1])
            if n
        }
    finally:
        for proc in (worker, fast, slow):
            lab.stop(proc)
        for server in servers.values():
            lab.stop(server.proc)


async def run(bench: Bench, reps: int, log: Callable[[str], Any]) -> Result:
    result = Result()
    for rep in range(reps):
        paperboy = Latency.of(
            await _paperboy_samples(bench, f"pickup-{rep}-{uuid.uuid4().hex[:6]}")
        )
        fast = Latency.of(await _bare_samples(bench, SHIPPED_POLL_DELAY))
        default = Latency.of(await _bare_samples(bench, ARQ_DEFAULT_POLL_DELAY))
        result.reps.append(Rep(paperboy, fast, default))
        log(
            f"  rep {rep + 1}: paperboy p50 {paperboy.p50_ms:.1f} p99 {paperboy.p99_ms:.1f} ms; "
            f"bare 0.01 p50 {fast.p50_ms:.1f} p99 {fast.p99_ms:.1f}; "
            f"bare 0.5 p50 {default.p50_ms:.0f}"
        )
    await _idle(bench, reps, result, log)
    bench.redis.flush()
    return result
