"""Leases on running tasks, kept alive by one heartbeat per worker, and the reaper of lapsed ones.

arq's own claim (`arq:in-progress:<id>`) lives for the longest job timeout plus 10 s, so a digest
whose worker was SIGKILLed would wait ~15 minutes. A lease lapses after `LEASE_SECONDS` instead;
the reaper then deletes arq's claim so the job, still in the queue under its own id, is picked up
by another worker at its next poll.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time

from arq.connections import ArqRedis
from redis.exceptions import RedisError

from shared import keys
from shared.presence import now_ms
from shared.queue import enqueue_digest
from shared.settings import Settings
from shared.tasks import TaskRepository

log = logging.getLogger("paperboy.lease")

# Delete the lease only if it still names this holder: a fenced zombie must not drop the lease
# of the attempt that replaced it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DEL', KEYS[1])
    redis.call('ZREM', KEYS[2], ARGV[2])
end
return 1
"""


class Heartbeat:
    """Renews the leases of the tasks this worker runs, and announces the worker itself."""

    def __init__(self, redis: ArqRedis, settings: Settings, worker_id: str) -> None:
        self.redis = redis
        self.worker_id = worker_id
        self.lease_ms = int(settings.lease_seconds * 1000)
        self.interval = settings.heartbeat_seconds
        self.held: dict[str, int] = {}
        self.started_at = time.time()
        self._loop_task: asyncio.Task[None] | None = None
        self._release_script = redis.register_script(_RELEASE)

    def holder(self, task_id: str) -> str:
        return f"{self.worker_id}:{self.held.get(task_id, 0)}"

    async def start(self) -> None:
        await self.beat()
        self._loop_task = asyncio.create_task(self._loop(), name="paperboy-heartbeat")

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        try:
            await self.redis.zrem(keys.WORKERS, self.worker_id)
            await self.redis.delete(keys.worker_key(self.worker_id))
        except RedisError:
            log.warning("could not withdraw worker presence", extra={"worker_id": self.worker_id})

    async def acquire(self, task_id: str, attempt: int) -> None:
        self.held[task_id] = attempt
        await self._renew([task_id])

    async def release(self, task_id: str) -> None:
        holder = self.holder(task_id)
        self.held.pop(task_id, None)
        try:
            await self._release_script(
                keys=[keys.lease_key(task_id), keys.LEASES], args=[holder, task_id]
            )
            await self._renew([])  # the worker's presence no longer lists the task
        except RedisError:
            log.warning("lease release failed; it will lapse", extra={"task_id": task_id})

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.beat()

    async def beat(self) -> None:
        try:
            await self._renew(list(self.held))
        except RedisError as exc:
            log.warning("heartbeat failed: %s", exc, extra={"worker_id": self.worker_id})

    async def _renew(self, task_ids: list[str]) -> None:
        now = now_ms()
        info = {
            "id": self.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": self.started_at,
            "last_heartbeat": now / 1000,
            "running": sorted(self.held),
        }
        async with self.redis.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.set(keys.lease_key(task_id), self.holder(task_id), px=self.lease_ms)
                pipe.zadd(keys.LEASES, {task_id: now + self.lease_ms})
            pipe.zadd(keys.WORKERS, {self.worker_id: now})
            pipe.set(keys.worker_key(self.worker_id), json.dumps(info), px=self.lease_ms)
            pipe.zremrangebyscore(keys.WORKERS, "-inf", now - 86_400_000)
            await pipe.execute()


async def reap(redis: ArqRedis, tasks: TaskRepository) -> list[str]:
    """Make every task whose lease lapsed runnable again at once, under the same job id."""
    lapsed = [t.decode() for t in await redis.zrangebyscore(keys.LEASES, "-inf", now_ms())]
    released = []
    for task_id in lapsed:
        task = await tasks.get(task_id)
        if task is not None and task.status.active and task.running:
            await _requeue(redis, task_id)
            released.append(task_id)
            log.warning(
                "lease lapsed; task released for another worker",
                extra={"task_id": task_id, "attempt": task.attempt},
            )
        await redis.zrem(keys.LEASES, task_id)
    return released


async def _requeue(redis: ArqRedis, task_id: str) -> None:
    await redis.delete(keys.ARQ_IN_PROGRESS + keys.digest_job_id(task_id))
    if not await redis.exists(keys.ARQ_JOB + keys.digest_job_id(task_id)):
        await enqueue_digest(redis, task_id)
    elif await redis.zscore(keys.QUEUE, keys.digest_job_id(task_id)) is None:
        await redis.zadd(keys.QUEUE, {keys.digest_job_id(task_id): now_ms()})
