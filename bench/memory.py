"""Figure 6: memory. Peak RSS (VmHWM) of one worker running 10 digests at once, and the resident
size of an idle worker against an idle bare arq worker.

The digests are real ones on the bundled 60-paper sample feed with the shipped shape (5 picks,
so rank + 5 analyses + highlights) against a local OpenAI-compatible provider answering in
300 ms, each with a callback; WORKER_MAX_JOBS is the shipped 10, so all ten run together. Idle
sizes are VmRSS one second after the worker announced itself; the target for an idle worker is
≤ 50 MiB. This worker has a provider configured, so it has loaded the `openai` SDK, which an
offline worker no longer imports.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.servers import Bench, llm_env, start_bare_worker, start_worker, worker_ready
from bench.tasks import Producer, StoreReader, digest_body, timestamp
from tests.fake_openai import FakeOpenAI

DIGESTS = 10
PICKS = 5
LATENCY = 0.3
TIMEOUT = 60.0


@dataclass
class Rep:
    peak_mib: float  # VmHWM of the worker after the 10 digests
    idle_mib: float  # VmRSS of the Paperboy worker, idle
    bare_idle_mib: float  # VmRSS of a bare arq worker, idle
    concurrent: int  # digests that were running at the same moment


@dataclass
class Result:
    digests: int = DIGESTS
    reps: list[Rep] = field(default_factory=list)


def _overlap(rows: list[Any]) -> int:
    events = sorted(
        [(timestamp(r["started_at"]), 1) for r in rows]
        + [(timestamp(r["finished_at"]), -1) for r in rows]
    )
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


async def _rep(bench: Bench, name: str) -> Rep:
    bench.redis.flush()
    bench.receiver.reset()
    sqlite_path = bench.sqlite_path(name)
    with FakeOpenAI(latency=LATENCY) as fake:
        env = llm_env(
            bench.redis.url(),
            sqlite_path,
            fake.url,
        )
        producer = await Producer.open(bench.redis.url(), sqlite_path)
        worker = start_worker(bench.lab, env, "worker-memory")
        bare = start_bare_worker(bench.lab, bench.redis, poll_delay=0.5)
        reader = StoreReader(sqlite_path)
        try:
            worker_ready(bench.redis, worker)
            await asyncio.sleep(1.0)
            idle = worker.status_kib("VmRSS") / 1024
            bare_idle = bare.status_kib("VmRSS") / 1024
            bench.lab.stop(bare)
            ids = [
                await producer.create(digest_body(top_n=PICKS, callback_url=bench.receiver.url))
                for _ in range(DIGESTS)
            ]
            for task_id in ids:
                await producer.enqueue(task_id)
            deadline = time.monotonic() + TIMEOUT
            while reader.count("callback_status = 'delivered'") < DIGESTS:
                if time.monotonic() > deadline or not worker.alive():
                    raise TimeoutError("memory run: digests did not all finish")
                await asyncio.sleep(0.05)
            peak = worker.status_kib("VmHWM") / 1024
            rows = [reader.row(t) for t in ids]
            return Rep(peak, idle, bare_idle, _overlap(rows))
        finally:
            reader.close()
            bench.lab.stop(worker)
            bench.lab.stop(bare)
            await producer.close()


async def run(bench: Bench, reps: int, log: Callable[[str], Any]) -> Result:
    result = Result()
    for rep in range(reps):
        current = await _rep(bench, f"memory-{rep}-{uuid.uuid4().hex[:6]}")
        result.reps.append(current)
        log(
            f"  rep {rep + 1}: peak {current.peak_mib:.1f} MiB with {current.concurrent} at once; "
            f"idle {current.idle_mib:.1f} MiB vs bare arq {current.bare_idle_mib:.1f} MiB"
        )
    bench.redis.flush()
    return result
