"""Figure 3: what the task lifecycle costs a worker, against bare arq no-op jobs.

Paperboy: tasks whose pipeline does nothing worth measuring (offline writer, SOURCE_MODE=sample
with a one-entry feed, top_n 1) but go through everything a real task does: claim in the store,
lease and heartbeat, stage writes, checkpoints, render, the terminal write, then the callback job
posting a signed callback to a local receiver and recording its delivery. Rows are written and
jobs enqueued from the benchmark process (as the API would) while the one worker is stopped
(SIGSTOP); the clock starts at SIGCONT and stops when the store shows every callback delivered.

Bare arq: the same number of no-op jobs on the same Redis, one worker with the same max_jobs
and poll delay, timed the same way until its queue is empty.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from arq.connections import RedisSettings, create_pool

from bench.bare import QUEUE as BARE_QUEUE
from bench.servers import (
    ONE_ENTRY_FEED,
    Bench,
    Proc,
    paperboy_env,
    start_bare_worker,
    start_worker,
    worker_ready,
)
from bench.tasks import Producer, StoreReader, digest_body

TASKS = 2_000
SHIPPED_POLL_DELAY = 0.01
TIMEOUT = 240.0


@dataclass
class Rep:
    paperboy_rate: float  # tasks per second, callbacks included
    bare_rate: float  # no-op jobs per second
    paperboy_cpu_ms: float  # worker CPU per task
    paperboy_loop_cpu_ms: float  # of which the event-loop thread
    bare_cpu_ms: float
    callbacks: int  # POSTs the receiver counted
    paperboy_commands: float  # Redis commands per task
    bare_commands: float  # Redis commands per job
    paperboy_by_command: dict[str, float] = field(default_factory=dict)  # per task

    @property
    def ratio(self) -> float:
        return self.paperboy_rate / self.bare_rate


@dataclass
class Result:
    tasks: int
    reps: list[Rep] = field(default_factory=list)


def _per(before: dict[str, int], after: dict[str, int], n: int) -> dict[str, float]:
    calls = {cmd: (after[cmd] - before.get(cmd, 0)) / n for cmd in after if cmd != "info"}
    return {cmd: v for cmd, v in sorted(calls.items(), key=lambda kv: -kv[1]) if v > 0}


async def _paperboy(
    bench: Bench, tasks: int, name: str, on_start: Callable[[Proc], Any] | None = None
) -> tuple[float, float, float, int, dict[str, float]]:
    bench.redis.flush()
    bench.receiver.reset()
    sqlite_path = bench.sqlite_path(name)
    env = paperboy_env(bench.redis.url(), sqlite_path, arxiv_sample_path=ONE_ENTRY_FEED)
    producer = await Producer.open(bench.redis.url(), sqlite_path)
    worker = start_worker(bench.lab, env)
    reader = StoreReader(sqlite_path)
    try:
        worker_ready(bench.redis, worker)
        await asyncio.sleep(0.3)
        worker.signal(signal.SIGSTOP)
        body = digest_body(top_n=1, callback_url=bench.receiver.url)
        ids = [await producer.create(body) for _ in range(tasks)]
        for task_id in ids:
            await producer.enqueue(task_id)
        loop0, other0 = worker.thread_cpu()
        commands0 = bench.redis.commandstats()
        start = time.perf_counter()
        worker.signal(signal.SIGCONT)
        if on_start is not None:
            on_start(worker)  # the profiler attaches here
        deadline = start + TIMEOUT
        delivered = "callback_status = 'delivered'"
        while reader.count(delivered) < tasks:
            if time.perf_counter() > deadline or not worker.alive():
                raise TimeoutError(f"paperboy drain: {reader.count(delivered)} of {tasks} done")
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - start
        loop1, other1 = worker.thread_cpu()
        loop, cpu = loop1 - loop0, loop1 + other1 - loop0 - other0
        by_command = _per(commands0, bench.redis.commandstats(), tasks)
        callbacks = bench.receiver.counts()["posts"]
        return tasks / elapsed, cpu / tasks * 1000, loop / tasks * 1000, callbacks, by_command
    finally:
        reader.close()
        bench.lab.stop(worker)
        await producer.close()


async def _bare(bench: Bench, tasks: int) -> tuple[float, float, dict[str, float]]:
    bench.redis.flush()
    worker = start_bare_worker(bench.lab, bench.redis, poll_delay=SHIPPED_POLL_DELAY)
    pool = await create_pool(
        RedisSettings(host="127.0.0.1", port=bench.redis.port), default_queue_name=BARE_QUEUE
    )
    try:
        await asyncio.sleep(0.3)
        worker.signal(signal.SIGSTOP)
        for _ in range(tasks):
            await pool.enqueue_job("noop")
        cpu0 = worker.cpu_seconds()
        commands0 = bench.redis.commandstats()
        start = time.perf_counter()
        worker.signal(signal.SIGCONT)
        deadline = start + TIMEOUT
        while await pool.zcard(BARE_QUEUE) > 0:
            if time.perf_counter() > deadline or not worker.alive():
                raise TimeoutError("bare arq drain")
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - start
        cpu = worker.cpu_seconds() - cpu0
        by_command = _per(commands0, bench.redis.commandstats(), tasks)
        by_command.pop("zcard", None)  # the benchmark's own polling
        return tasks / elapsed, cpu / tasks * 1000, by_command
    finally:
        await pool.aclose()
        bench.lab.stop(worker)


async def run(bench: Bench, reps: int, log: Callable[[str], Any], tasks: int = TASKS) -> Result:
    result = Result(tasks)
    for rep in range(reps):
        bare_rate, bare_cpu, bare_cmds = await _bare(bench, tasks)
        name = f"overhead-{rep}-{uuid.uuid4().hex[:6]}"
        rate, cpu, loop_cpu, callbacks, cmds = await _paperboy(bench, tasks, name)
        current = Rep(
            paperboy_rate=rate,
            bare_rate=bare_rate,
            paperboy_cpu_ms=cpu,
            paperboy_loop_cpu_ms=loop_cpu,
            bare_cpu_ms=bare_cpu,
            callbacks=callbacks,
            paperboy_commands=sum(cmds.values()),
            bare_commands=sum(bare_cmds.values()),
            paperboy_by_command=cmds,
        )
        result.reps.append(current)
        log(
            f"  rep {rep + 1}: paperboy {rate:,.0f} tasks/s ({cpu:.2f} ms CPU each, "
            f"{loop_cpu:.2f} on the loop), bare "
            f"{bare_rate:,.0f} jobs/s ({bare_cpu:.2f} ms), ratio {current.ratio:.2f}; redis "
            f"{current.paperboy_commands:.0f} vs {current.bare_commands:.0f} commands per task"
        )
    bench.redis.flush()
    return result
