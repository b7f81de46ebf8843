"""The periodic sweeps run as tasks in the worker: the reaper on a real Redis, the reconciler's
one-per-interval lock, and how the loop meets errors and shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from paperboy_worker.context import WorkerContext
from paperboy_worker.lease import Heartbeat, lapsed, sighting_grace_ms
from paperboy_worker.reconcile import reap_leases, start_sweeps
from paperboy_worker.sweeps import Periodic, once_per_interval
from shared import arqstore, keys
from shared.lifecycle import DIGEST
from shared.models import TaskStatus
from tests.support import wait_until_async
from tests.worker.support import digest, worker_context, worker_settings

pytestmark = pytest.mark.integration

TASK = "t-swept"


@pytest.fixture
async def ctx(tmp_path: Path, redis_url: str) -> AsyncIterator[WorkerContext]:
    settings = worker_settings(
        tmp_path,
        redis_url,
        lease_seconds=2,
        heartbeat_seconds=0.1,
        reaper_interval_seconds=1,
        reconcile_interval_seconds=60,
    )
    async with worker_context(settings) as context:
        yield context


async def _running_task_whose_holder_died(ctx: WorkerContext) -> None:
    """A running digest with arq's claim and a lease that nobody renews."""
    await ctx["tasks"].create(digest(TASK, status=TaskStatus.PROCESSING, running=True, attempt=1))
    job_id = DIGEST.job_id(TASK)
    await ctx["redis"].set(arqstore.job_key(job_id), b"{}")
    await ctx["redis"].set(arqstore.in_progress_key(job_id), b"1")
    await Heartbeat(ctx["redis"], ctx["settings"], "gone-worker").acquire(TASK, 1)


def _sweep_tasks() -> list[asyncio.Task[object]]:
    return [
        task
        for task in asyncio.all_tasks()
        if task.get_name() in ("paperboy-reaper", "paperboy-reconciler") and not task.done()
    ]


async def test_the_worker_reaper_reaps_a_lapsed_lease_within_its_interval(
    ctx: WorkerContext,
) -> None:
    settings = ctx["settings"]
    await _running_task_whose_holder_died(ctx)
    sweeps = start_sweeps(ctx)
    try:
        # sighted at the first sweep a grace after the last renewal, reapable once lapsed and a
        # grace after the sighting, reaped at the sweep after that; plus a second for a busy box
        grace, interval = sighting_grace_ms(settings) / 1000, settings.reaper_interval_seconds
        bound = max(settings.lease_seconds, 2 * grace + interval) + interval + 1

        async def claim_dropped() -> bool:
            return not await ctx["redis"].exists(arqstore.in_progress_key(DIGEST.job_id(TASK)))

        await wait_until_async(claim_dropped, within=bound)
        assert await ctx["redis"].zscore(keys.QUEUE, DIGEST.job_id(TASK)) is not None
    finally:
        for sweep in sweeps:
            await sweep.stop()


async def test_two_reapers_sweeping_at_once_reap_once(ctx: WorkerContext) -> None:
    settings = ctx["settings"]
    lease_ms, grace_ms = int(settings.lease_seconds * 1000), sighting_grace_ms(settings)
    await _running_task_whose_holder_died(ctx)

    async def reapable() -> bool:
        return await lapsed(ctx["redis"], lease_ms=lease_ms, grace_ms=grace_ms) == [TASK]

    await wait_until_async(reapable, within=10)

    assert sorted(await asyncio.gather(reap_leases(ctx), reap_leases(ctx))) == [0, 1]
    assert await ctx["redis"].zcard(keys.QUEUE) == 1


async def test_the_sweeps_stop_on_shutdown(ctx: WorkerContext) -> None:
    sweeps = start_sweeps(ctx)
    assert len(_sweep_tasks()) == 2

    for sweep in sweeps:
        await sweep.stop()

    assert _sweep_tasks() == []


async def test_a_sweep_that_fails_is_tried_again() -> None:
    calls: list[int] = []
    done = asyncio.Event()

    async def flaky() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RedisConnectionError("redis went away")
        done.set()

    periodic = Periodic("flaky", 0.01, flaky, timeout=1)
    periodic.start()
    try:
        await asyncio.wait_for(done.wait(), 5)
    finally:
        await periodic.stop()
    assert calls[:2] == [0, 1]


async def test_only_one_worker_reconciles_per_interval(ctx: WorkerContext) -> None:
    runs: list[str] = []

    def worker(name: str) -> Periodic:
        async def sweep() -> None:
            runs.append(name)

        locked = once_per_interval(ctx["redis"], "paperboy:test-lock", name, 30, sweep)
        return Periodic(name, 30, locked, timeout=1)

    first, second = worker("w1"), worker("w2")
    assert await first.run_once() and await second.run_once() and await first.run_once()

    assert runs == ["w1"]
