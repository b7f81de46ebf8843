"""Figures 4 and 7: LLM-bound digests against a provider that allows 120 requests a minute.

The provider is `tests.fake_openai.FakeOpenAI` (300 ms per call, its own sliding 60 s window of
120 requests, 429 past it); Paperboy's workers share their limiter (LLM_RPM=120) through Redis.
A digest is three calls (top_n_articles=1 on a one-entry feed: rank, one analysis, highlights).

The bound is the provider's rate: makespan ÷ (calls ÷ 120/min) is 1.0 for a system that never
wastes a slot. Both windows are sliding logs, which admit a full minute's worth at once when
they start empty, so a cold start would finish 120 calls in a couple of seconds and say nothing
about the rate. Each run therefore starts in the steady state of a system that has been busy at
exactly 120/min: both the provider's window and Paperboy's limiter window are filled with 120
entries spaced 0.5 s apart (the oldest expiring now), the provider's a little older than the
limiter's, as the limiter itself keeps them: it scores a finished request when the call ended,
never before the provider saw it arrive. From there, a slot opens every 0.5 s and N calls cannot
finish in less than N × 0.5 s.

Figure 7 runs the same workload with 1, 2 and 4 worker processes; figure 4 is its 2-worker row.
LLM_TPM is raised out of the way so that only the request limit binds.
"""

# ruff: noqa: RUF002  (typography of the generated document: multiplication sign, dashes)

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.servers import (
    ONE_ENTRY_FEED,
    Bench,
    RedisServer,
    llm_env,
    start_worker,
    worker_ready,
)
from bench.tasks import Producer, StoreReader, digest_body
from shared import keys
from tests.fake_openai import FakeOpenAI

PROVIDER_RPM = 120
WINDOW = 60.0
LATENCY = 0.3
DIGESTS = 10
CALLS_PER_DIGEST = 3
WORKER_COUNTS = (1, 2, 4)


@dataclass
class Run:
    workers: int
    digests: int
    makespan: float  # seconds, first enqueue to the last digest's finished_at
    calls: int  # completions the provider served
    refused: int  # 429s the provider's own limit answered
    completed: int

    @property
    def bound(self) -> float:
        return self.calls / (PROVIDER_RPM / WINDOW)

    @property
    def ratio(self) -> float:
        return self.makespan / self.bound


@dataclass
class Result:
    digests: int = DIGESTS
    llm_rpm: int = PROVIDER_RPM
    runs: dict[int, list[Run]] = field(default_factory=dict)  # by worker count


def prefill(fake: FakeOpenAI, server: RedisServer, rpm: int, window: float) -> None:
    """Both windows as a system busy at exactly `rpm` would leave them (see the module doc)."""
    spacing = window / rpm
    client = server.client()
    try:
        mono = time.monotonic()  # taken first: the provider's entries come out older
        seconds, micros = client.time()  # type: ignore[misc]
        now_us = seconds * 1_000_000 + micros
        log_key, tokens_key = keys.ratelimit_log_key("llm"), keys.ratelimit_tokens_key("llm")
        entries = {
            f"bench-prefill-{i}": now_us - int((window - spacing * i) * 1e6) for i in range(rpm)
        }
        ttl_ms = int(window * 1000) + 10_000
        with client.pipeline(transaction=True) as pipe:
            pipe.delete(log_key, tokens_key)
            pipe.zadd(log_key, entries)
            pipe.hset(tokens_key, mapping=dict.fromkeys(entries, 0))
            pipe.pexpire(log_key, ttl_ms)
            pipe.pexpire(tokens_key, ttl_ms)
            pipe.execute()
    finally:
        client.close()
    with fake.lock:
        admitted = fake._admitted  # the provider's window: admission times, oldest first
        admitted.clear()
        admitted.extend(mono - (window - spacing * i) for i in range(rpm))


async def _run(bench: Bench, workers: int, digests: int, name: str) -> Run:
    bench.redis.flush()
    sqlite_path = bench.sqlite_path(name)
    with FakeOpenAI(latency=LATENCY, rpm=PROVIDER_RPM, window=WINDOW) as fake:
        env = llm_env(
            bench.redis.url(),
            sqlite_path,
            fake.url,
            arxiv_sample_path=ONE_ENTRY_FEED,
            llm_rpm=PROVIDER_RPM,
            llm_tpm=100_000_000,
        )
        producer = await Producer.open(bench.redis.url(), sqlite_path)
        procs = [start_worker(bench.lab, env, f"worker-llm-{i}") for i in range(workers)]
        reader = StoreReader(sqlite_path)
        try:
            for proc in procs:
                worker_ready(bench.redis, proc)
            ids = [await producer.create(digest_body(top_n=1)) for _ in range(digests)]
            prefill(fake, bench.redis, PROVIDER_RPM, WINDOW)
            started = time.time()
            for task_id in ids:
                await producer.enqueue(task_id)
            bound = digests * CALLS_PER_DIGEST * WINDOW / PROVIDER_RPM
            deadline = time.monotonic() + bound * 2 + 30
            terminal = "status IN ('completed', 'failed', 'cancelled')"
            while reader.count(terminal) < digests:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"llm run: {reader.count(terminal)} of {digests} finished")
                await asyncio.sleep(0.1)
            makespan = reader.max_finished() - started
            completed = reader.count("status = 'completed'")
            with fake.lock:
                calls, refused = fake.completions, fake.refused
            return Run(workers, digests, makespan, calls, refused, completed)
        finally:
            reader.close()
            for proc in procs:
                bench.lab.stop(proc)
            await producer.close()


async def run(
    bench: Bench,
    reps: int,
    log: Callable[[str], Any],
    worker_counts: tuple[int, ...] = WORKER_COUNTS,
    digests: int = DIGESTS,
) -> Result:
    result = Result(digests=digests)
    for rep in range(reps):
        for workers in worker_counts:
            name = f"llm-{workers}-{rep}-{uuid.uuid4().hex[:6]}"
            current = await _run(bench, workers, digests, name)
            result.runs.setdefault(workers, []).append(current)
            log(
                f"  rep {rep + 1} workers={workers}: makespan {current.makespan:.2f}s, "
                f"bound {current.bound:.1f}s, ratio {current.ratio:.3f}, calls {current.calls}, "
                f"refused {current.refused}, completed {current.completed}/{digests}"
            )
    bench.redis.flush()
    return result
