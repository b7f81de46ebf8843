"""arq's worker that waits for work on a blocking pop instead of polling, and survives a dropped
Redis connection.

arq polls the queue every `poll_delay`: at 10 ms that is ~100 commands a second per idle worker,
at arq's 0.5 s a quarter-second late pickup. Here an idle worker blocks on the wake list
(`keys.WAKE`) that every enqueue pushes one entry to (`shared/arqstore.py`), on a connection of
its own so jobs never wait behind the block. The block ends on a push, or when the queue's next
deferred job or cron slot is due, or after `idle_poll_seconds` at most: the safety net for a job
queued without a push (arq's own `Retry`, a reclaimed job). Then arq's own poll iteration runs,
so claims, in-progress keys and retries are arq's; a retry of a job this worker ran ends its
block, to plan the next one around the retry's time. A worker that has just started a job, is
full or is shutting down does not block: it keeps arq's pace, and a worker woken but left full
passes the wake on, so a job it cannot take does not wait for the safety net.

arq lets any Redis error in its poll loop end the process (arq-semantics.md §0.8). redis-py
retries plain commands, but a connection that dies under `WATCH` (arq claims each job that way)
surfaces as `WatchError` at once, and a Redis that stays away outlasts any command retry. Here a
failed poll is logged and retried with bounded back-off while jobs already running carry on.

This is the one place that reaches into arq's `Worker` (its keys and job format are
`shared/arqstore.py`'s): `_poll_iteration` is wrapped, and the slot `start_jobs` takes for the
job it is claiming (`job_counter`, `sem`) is given back when the claim fails on the connection,
or every outage would shrink the worker by one job until it stopped taking any.
`tests/shared/test_arq_contract.py` pins these hooks to the installed arq, next to every other
assumption about arq's internals; `tests/worker/test_poller.py` runs them.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from signal import Signals
from typing import Any

from arq.utils import timestamp_ms
from arq.worker import Worker
from redis.asyncio import ConnectionPool, Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from shared import arqstore, keys

log = logging.getLogger("paperboy.poller")

# arq handles the WatchError of a lost race itself; one that escapes it was raised by redis-py
# for a connection that died while watching. OSError: a refused connect while Redis restarts.
CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, WatchError, OSError)
BACKOFF_FIRST_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 5.0
IDLE_POLL_SECONDS = 5.0
# A block shorter than this is not worth a round trip (and BLPOP's 0 would mean forever).
MIN_BLOCK_SECONDS = 0.005
# The wake connection's socket timeout exceeds the longest block by this much, so a block that
# ends normally is never mistaken for a dead socket.
WAKE_SOCKET_MARGIN_SECONDS = 5.0


def backoff_seconds(failed_polls: int) -> float:
    """The pause after the n-th poll in a row to fail: doubling from 0.1 s, capped at 5 s."""
    return float(min(BACKOFF_CAP_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** (failed_polls - 1)))


class PaperboyWorker(Worker):
    """arq's `Worker`, woken by enqueues and kept up through Redis outages."""

    failed_polls = 0

    def __init__(
        self, *args: Any, idle_poll_seconds: float = IDLE_POLL_SECONDS, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.idle_poll_seconds = idle_poll_seconds
        self._wake: Redis | None = None
        self._blocked: asyncio.Future[bool] | None = None
        self._started = 1  # jobs started by the last poll: the first one looks before it waits
        self._replans = 0  # retries of our own jobs queued for later: each calls for a new plan

    async def _poll_iteration(self) -> None:
        try:
            woken = await self._wait_for_work()
            self._started = 0
            await super()._poll_iteration()
            if woken and self.job_counter >= self.max_jobs:
                await arqstore.wake(self.pool)
        except CONNECTION_ERRORS as exc:
            self.failed_polls += 1
            self._started = 1  # look at the queue before waiting again: pushes may be lost
            delay = backoff_seconds(self.failed_polls)
            log.warning(
                "poll failed on the Redis connection; retrying in %.1fs: %s",
                delay,
                exc,
                extra={"failed_polls": self.failed_polls, "error": type(exc).__name__},
            )
            await asyncio.sleep(delay)
            return
        if self.failed_polls:
            log.info("polling again after %d failed polls", self.failed_polls)
            self.failed_polls = 0

    async def _wait_for_work(self) -> bool:
        """Block until an enqueue wakes this worker (True) or the next due time (False)."""
        if self._started or not self.allow_pick_jobs or self.job_counter >= self.max_jobs:
            return False  # more may be queued, or nothing could be taken: arq's own pace
        replans = self._replans
        timeout = await self._idle_seconds()
        if timeout < MIN_BLOCK_SECONDS or self._replans != replans:
            # A job of ours was re-queued for later while the plan was made: plan again, or
            # its retry would wait for the safety net instead of its own time.
            return False
        self._blocked = asyncio.ensure_future(self._pop(timeout))
        try:
            return await self._blocked
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the worker itself is being cancelled, not just the block
            return False  # ended on purpose: a shutdown signal, or a retry to plan for
        finally:
            self._blocked = None

    async def _pop(self, seconds: float) -> bool:
        popped = await self._wake_client().blpop([keys.WAKE], timeout=seconds)  # type: ignore[misc, arg-type]
        return popped is not None

    def handle_sig_wait_for_completion(self, signum: Signals) -> None:
        # arq stops taking jobs and waits for its running ones, which it counts as finished only
        # in a poll iteration: end the block so that iteration comes now, not at its timeout.
        super().handle_sig_wait_for_completion(signum)
        if self._blocked is not None:
            self._blocked.cancel()

    async def run_job(self, job_id: str, score: int) -> None:
        retried = self.jobs_retried
        await super().run_job(job_id, score)
        if self.jobs_retried > retried:
            # arq re-queued the job at a later score without a push (and has written it by
            # now); a block planned without it must end, and one being planned must not start.
            self._replans += 1
            if self._blocked is not None:
                self._blocked.cancel()

    async def _idle_seconds(self) -> float:
        """Until the queue's next deferred job, the next cron slot, or the safety-net poll."""
        now_ms = timestamp_ms()
        due = [self.idle_poll_seconds, *self._cron_seconds()]
        next_ms = await arqstore.next_job_ms(self.pool, self.queue_name)
        if next_ms is not None:
            due.append((next_ms - now_ms) / 1000)
        return min(due)

    def _cron_seconds(self) -> list[float]:
        # arq's poll enqueues a cron job once its slot is less than twice max(poll_delay, 0.5 s)
        # ahead (`Worker.heart_beat`); waking half of that ahead lands inside the window.
        ahead = max(self.poll_delay_s, 0.5)
        now = datetime.now(tz=self.timezone)
        return [
            (job.next_run - now).total_seconds() - ahead
            for job in self.cron_jobs
            if job.next_run is not None
        ]

    def _wake_client(self) -> Redis:
        if self._wake is None:
            shared = self.pool.connection_pool
            options = {
                **shared.connection_kwargs,
                "socket_timeout": self.idle_poll_seconds + WAKE_SOCKET_MARGIN_SECONDS,
            }
            pool = ConnectionPool(
                connection_class=shared.connection_class, max_connections=1, **options
            )
            self._wake = Redis(connection_pool=pool)
        return self._wake

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            if self._wake is not None:
                await self._wake.aclose(close_connection_pool=True)
                self._wake = None

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        running = len(self.tasks)
        try:
            await super().start_jobs(job_ids)
            self._started += len(self.tasks) - running
        except CONNECTION_ERRORS:
            # Raised between arq taking a slot for a job and starting or skipping it.
            self.job_counter -= 1
            self.sem.release()
            raise
