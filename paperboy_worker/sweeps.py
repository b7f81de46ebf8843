"""The periodic sweeps (lease reaper, reconciler) as plain tasks inside each worker process.

As arq cron jobs each run cost ~30 Redis commands (the cron enqueue, the claim, the in-progress
key, the result...) for a sweep that is one script call, which was most of an idle worker's
traffic. Here a sweep costs what it does.

Every worker runs every sweep. The reaper needs no coordination: its sweep only records
sightings (HSETNX), and each reap is one atomic script that checks the lease again, so a second
reaper finds the lease gone and does nothing; a job queued again keeps its own id, so arq refuses
a duplicate. The reconciler reads the whole store, so a short lock (`SET NX PX`, one command per
worker per interval) lets only one worker run it per interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from arq.connections import ArqRedis
from redis.exceptions import RedisError

from shared.errors import PaperboyError

log = logging.getLogger("paperboy.sweeps")

Sweep = Callable[[], Awaitable[object]]

# A lock must be free again by its taker's next tick, even if that tick comes a little early.
LOCK_MARGIN_MS = 500


class Periodic:
    """Runs `sweep` every `interval` seconds until stopped. A Redis or store error is logged and
    the next try waits longer (up to `max_backoff` intervals); a sweep may not outlast `timeout`."""

    def __init__(
        self, name: str, interval: float, sweep: Sweep, *, timeout: float, max_backoff: int = 3
    ) -> None:
        self.name = name
        self.interval = interval
        self.sweep = sweep
        self.timeout = timeout
        self.max_backoff = max_backoff
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"paperboy-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        failures = 0
        while True:
            await asyncio.sleep(self.interval * min(1 + failures, self.max_backoff))
            failures = 0 if await self.run_once() else failures + 1

    async def run_once(self) -> bool:
        """One sweep; False when it failed. Any modelled error (a store outage, a rejected read)
        is retried: the sweep must outlive it, as an arq cron job did."""
        try:
            await asyncio.wait_for(self.sweep(), self.timeout)
        except (RedisError, PaperboyError, TimeoutError) as exc:
            log.warning("%s sweep failed: %r", self.name, exc)
            return False
        log.info("%s swept", self.name)  # what arq's job lines showed: the sweep ran
        return True


def once_per_interval(
    redis: ArqRedis, key: str, holder: str, interval: float, sweep: Sweep
) -> Sweep:
    """`sweep`, run only by the worker that takes `key` for this interval."""
    lock_ms = max(1, int(interval * 1000) - LOCK_MARGIN_MS)

    async def locked() -> object:
        if await redis.set(key, holder, nx=True, px=lock_ms):
            return await sweep()
        return None

    return locked
