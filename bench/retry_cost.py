"""Figure 5: what a crash costs in LLM calls.

Two workers with fast leases (LEASE_SECONDS=4, HEARTBEAT_SECONDS=1, REAPER_INTERVAL_SECONDS=1)
and a provider answering in 500 ms. A digest of 8 picks from the bundled sample feed costs
rank + 8 analyses (4 at a time, the shipped LLM_ANALYSIS_CONCURRENCY) + highlights = 10 calls
when nothing goes wrong (the clean run). In the killed run the worker holding the digest is
SIGKILLed 250 ms after the first analysis was checkpointed, i.e. during the analyses; the other
worker resumes it once the lease lapses.

In flight at the kill = requests the provider had received by then − paid steps checkpointed by
then (a call answered but not yet checkpointed was paid for and is lost with the worker).
Extra calls = the killed digest's calls − the clean digest's; the target is extra ≤ in flight.
"""

# ruff: noqa: RUF002  (typography of the generated document: multiplication sign, dashes)

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.servers import Bench, Proc, llm_env, start_worker, worker_ready
from bench.tasks import Producer, StoreReader, digest_body
from shared import keys
from tests.fake_openai import FakeOpenAI

LATENCY = 0.5
PICKS = 8
FAST_LEASES = {"lease_seconds": 4, "heartbeat_seconds": 1, "reaper_interval_seconds": 1}
KILL_AFTER_FIRST_ANALYSIS = 0.25
TIMEOUT = 60.0


@dataclass
class Rep:
    clean_calls: int
    killed_calls: int
    in_flight: int  # received by the provider but not checkpointed at the kill
    checkpointed: int  # paid steps saved before the kill
    resumed_in: float  # seconds from the kill to the digest's completion
    interruptions: int

    @property
    def extra(self) -> int:
        return self.killed_calls - self.clean_calls


@dataclass
class Result:
    picks: int = PICKS
    reps: list[Rep] = field(default_factory=list)


async def _until(check: Callable[[], Any], limit: float, what: str, interval: float) -> Any:
    deadline = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {limit:g}s")
        await asyncio.sleep(interval)


def _holder(reader: StoreReader, task_id: str, workers: list[Proc]) -> Proc | None:
    row = reader.row(task_id)
    if row is None or row["status"] != "processing" or not row["worker_id"]:
        return None
    pid = int(row["worker_id"].split("-")[-2])
    return next((w for w in workers if w.pid == pid), None)


async def _rep(bench: Bench, name: str) -> Rep:
    bench.redis.flush()
    sqlite_path = bench.sqlite_path(name)
    with FakeOpenAI(latency=LATENCY) as fake:
        env = llm_env(
            bench.redis.url(),
            sqlite_path,
            fake.url,
            **FAST_LEASES,
        )
        producer = await Producer.open(bench.redis.url(), sqlite_path)
        workers = [start_worker(bench.lab, env, f"worker-retry-{i}") for i in range(2)]
        reader = StoreReader(sqlite_path)
        redis = bench.redis.client()
        try:
            for worker in workers:
                worker_ready(bench.redis, worker)
            done = "task_id = ? AND status IN ('completed', 'failed', 'cancelled')"

            clean = await producer.create(digest_body(top_n=PICKS))
            await producer.enqueue(clean)
            await _until(lambda: reader.count(done, clean), TIMEOUT, "clean digest", 0.02)
            clean_calls = len(fake.requests)

            killed = await producer.create(digest_body(top_n=PICKS))
            await producer.enqueue(killed)
            checkpoint = keys.checkpoint_key(killed)

            def saved() -> int:
                return int(redis.hlen(checkpoint))  # type: ignore[arg-type]

            await _until(lambda: saved() >= 2, TIMEOUT, "first analysis", 0.002)
            await asyncio.sleep(KILL_AFTER_FIRST_ANALYSIS)
            victim = _holder(reader, killed, workers)
            if victim is None:
                raise RuntimeError("the digest is not running on either worker")
            victim.signal(signal.SIGKILL)
            killed_at = time.monotonic()
            victim.popen.wait(timeout=10)
            checkpointed = saved()
            with fake.lock:
                received = sum(1 for r in fake.requests[clean_calls:] if r.at <= killed_at)
            await _until(lambda: reader.count(done, killed), TIMEOUT, "resumed digest", 0.02)
            resumed_in = time.monotonic() - killed_at
            row = reader.row(killed)
            assert row is not None
            if row["status"] != "completed":
                raise RuntimeError(f"the killed digest ended {row['status']}: {row['error']}")
            return Rep(
                clean_calls=clean_calls,
                killed_calls=len(fake.requests) - clean_calls,
                in_flight=received - checkpointed,
                checkpointed=checkpointed,
                resumed_in=resumed_in,
                interruptions=int(row["interruptions"]),
            )
        finally:
            redis.close()
            reader.close()
            for worker in workers:
                bench.lab.stop(worker)
            await producer.close()


async def run(bench: Bench, reps: int, log: Callable[[str], Any]) -> Result:
    result = Result()
    for rep in range(reps):
        current = await _rep(bench, f"retry-{rep}-{uuid.uuid4().hex[:6]}")
        result.reps.append(current)
        log(
            f"  rep {rep + 1}: clean {current.clean_calls} calls, killed {current.killed_calls} "
            f"(+{current.extra}), in flight at the kill {current.in_flight}, resumed in "
            f"{current.resumed_in:.1f}s"
        )
    bench.redis.flush()
    return result
