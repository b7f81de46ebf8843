"""arq's worker with a poll loop that survives a dropped Redis connection.

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

from arq.worker import Worker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

log = logging.getLogger("paperboy.poller")

# arq handles the WatchError of a lost race itself; one that escapes it was raised by redis-py
# for a connection that died while watching. OSError: a refused connect while Redis restarts.
CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, WatchError, OSError)
BACKOFF_FIRST_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 5.0


def backoff_seconds(failed_polls: int) -> float:
    """The pause after the n-th poll in a row to fail: doubling from 0.1 s, capped at 5 s."""
    return float(min(BACKOFF_CAP_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** (failed_polls - 1)))


class PaperboyWorker(Worker):
    """arq's `Worker`, kept up through Redis outages."""

    failed_polls = 0

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except CONNECTION_ERRORS as exc:
            self.failed_polls += 1
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

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        try:
            await super().start_jobs(job_ids)
        except CONNECTION_ERRORS:
            # Raised between arq taking a slot for a job and starting or skipping it.
            self.job_counter -= 1
            self.sem.release()
            raise
