"""Leases on running tasks, kept alive by one heartbeat per worker, and the reaper of lapsed ones.

arq's own claim (`arq:in-progress:<id>`) lives for the longest job timeout plus 10 s, so a digest
whose worker was SIGKILLed would wait ~15 minutes. A lease lapses after `LEASE_SECONDS` instead;
the reaper then deletes arq's claim so the job, still in the queue under its own id, is picked up
by another worker at its next poll.

Every time here is Redis `TIME`, read inside the scripts, so the workers' clocks never have to
agree: a worker whose clock is 30 s ahead sees the same expiries as every other.

A lease is reaped only when two things hold, both judged by Redis time:

- it lapsed: its holder has not renewed it for `LEASE_SECONDS`;
- a reaper sighted it overdue (not renewed for a heartbeat and a second) at least that long ago.

The sighting is what protects a live holder from a Redis stall. During a stall (`DEBUG SLEEP`,
`CLIENT PAUSE`, a slow fork) neither the heartbeat nor the reaper reaches Redis, while Redis time
runs on, so when it ends every lease may look lapsed. A sighting can only be recorded by a reaper
that got through, that is after the stall; from then on the holder has a full heartbeat interval
of a serving Redis to renew, and a renewal clears the sighting. A holder that is really gone is
sighted within a heartbeat of its last renewal, long before its lease lapses, so a crash still
costs a lease plus one reaper interval. What this does not cover: a holder already overdue before
the stall (sighted beforehand), or a second stall landing inside the grace; either may hand the
task to another attempt, which fencing in the store then keeps from writing twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from typing import Any

from arq.connections import ArqRedis
from redis.exceptions import RedisError

from shared import arqstore, keys
from shared.lifecycle import DIGEST
from shared.luascript import LuaScript
from shared.queue import enqueue_digest
from shared.settings import Settings
from shared.tasks import TaskRepository

log = logging.getLogger("paperboy.lease")

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# Renew (or, with force, take over) each lease, and announce the worker. A lease naming another
# holder is not touched: a newer attempt took it over, and its position is returned. A missing
# lease is written again, since a stall longer than the lease may have let it expire.
_RENEW = (
    _NOW
    + """
local lease_ms = tonumber(ARGV[1])
local lost = {}
for i = 5, #KEYS do
    local j = 4 + (i - 5) * 3
    local task_id, holder, force = ARGV[j], ARGV[j + 1], ARGV[j + 2]
    local current = redis.call('GET', KEYS[i])
    if force == '1' or current == false or current == holder then
        redis.call('SET', KEYS[i], holder, 'PX', lease_ms)
        redis.call('ZADD', KEYS[1], now + lease_ms, task_id)
        redis.call('HDEL', KEYS[2], task_id)
    else
        table.insert(lost, i - 4)
    end
end
redis.call('ZADD', KEYS[3], now, ARGV[2])
redis.call('SET', KEYS[4], ARGV[3], 'PX', lease_ms)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - 86400000)
return lost
"""
)

# Delete the lease only if it still names this holder: a fenced zombie must not drop the lease
# of the attempt that replaced it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DEL', KEYS[1])
    redis.call('ZREM', KEYS[2], ARGV[2])
    redis.call('HDEL', KEYS[3], ARGV[2])
end
return 1
"""

# Sight the overdue leases, forget sightings of leases that are gone, and return the lapsed
# leases sighted at least a grace ago.
_SWEEP = LuaScript(
    _NOW
    + """
local lease_ms, grace_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
for _, task_id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now + lease_ms - grace_ms)) do
    redis.call('HSETNX', KEYS[2], task_id, now)
end
for _, task_id in ipairs(redis.call('HKEYS', KEYS[2])) do
    if redis.call('ZSCORE', KEYS[1], task_id) == false then redis.call('HDEL', KEYS[2], task_id) end
end
local due = {}
for _, task_id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
    local seen = tonumber(redis.call('HGET', KEYS[2], task_id))
    if seen and now - seen >= grace_ms then table.insert(due, task_id) end
end
return due
"""
)

# The check and the reap in one step: a holder that renewed since the sweep keeps its lease and
# arq's claim. Returns 0 (still held), 1 (lease dropped), 2 (job queued again), 3 (no job left).
_REAP = LuaScript(
    _NOW
    + """
local task_id, grace_ms, requeue = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local expires = tonumber(redis.call('ZSCORE', KEYS[1], task_id))
local seen = tonumber(redis.call('HGET', KEYS[2], task_id))
if not expires or expires > now or not seen or now - seen < grace_ms then return 0 end
redis.call('ZREM', KEYS[1], task_id)
redis.call('HDEL', KEYS[2], task_id)
redis.call('DEL', KEYS[3])
if requeue ~= '1' then return 1 end
redis.call('DEL', KEYS[4])
if redis.call('EXISTS', KEYS[5]) == 0 then return 3 end
if redis.call('ZSCORE', KEYS[6], ARGV[4]) == false then
    redis.call('ZADD', KEYS[6], now, ARGV[4])
end
return 2
"""
)

STILL_HELD, DROPPED, REQUEUED, NO_JOB = 0, 1, 2, 3


def sighting_grace_ms(settings: Settings) -> int:
    """How long a lease must be overdue, and sighted, before it may be reaped: a heartbeat and
    a second, so a live holder always has one renewal's chance."""
    return int((settings.heartbeat_seconds + 1) * 1000)


class Heartbeat:
    """Renews the leases of the attempts this worker runs, and announces the worker itself.

    Leases are held per attempt: two attempts of one task can meet in one process (a reaped
    attempt still running when its replacement lands here), and each renews and releases only
    its own.
    """

    def __init__(self, redis: ArqRedis, settings: Settings, worker_id: str) -> None:
        self.redis = redis
        self.worker_id = worker_id
        self.lease_ms = int(settings.lease_seconds * 1000)
        self.interval = settings.heartbeat_seconds
        self.held: set[tuple[str, int]] = set()
        self.started_at = time.time()
        self._loop_task: asyncio.Task[None] | None = None
        self._renew_script = redis.register_script(_RENEW)
        self._release_script = redis.register_script(_RELEASE)

    def holder(self, attempt: int) -> str:
        return f"{self.worker_id}:{attempt}"

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
        """Take the task's lease for this attempt, over whatever attempt held it before."""
        self.held.add((task_id, attempt))
        await self._renew(self._newest_first(), forced=(task_id, attempt))

    async def release(self, task_id: str, attempt: int) -> None:
        self.held.discard((task_id, attempt))
        try:
            await self._release_script(
                keys=[keys.lease_key(task_id), keys.LEASES, keys.LEASE_SIGHTINGS],
                args=[self.holder(attempt), task_id],
            )
            await self._renew([])  # the worker's presence no longer lists the task
        except RedisError:
            log.warning(
                "lease release failed; it will lapse",
                extra={"task_id": task_id, "attempt": attempt},
            )

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.beat()

    async def beat(self) -> None:
        try:
            await self._renew(self._newest_first())
        except RedisError as exc:
            log.warning("heartbeat failed: %s", exc, extra={"worker_id": self.worker_id})

    def _newest_first(self) -> list[tuple[str, int]]:
        # If a stall let a task's lease expire, its newest attempt here writes it back first.
        return sorted(self.held, key=lambda held: held[1], reverse=True)

    async def _renew(
        self, leases: list[tuple[str, int]], forced: tuple[str, int] | None = None
    ) -> None:
        args: list[Any] = [self.lease_ms, self.worker_id, self._presence()]
        for lease in leases:
            args += [lease[0], self.holder(lease[1]), "1" if lease == forced else "0"]
        lease_keys = [keys.lease_key(task_id) for task_id, _ in leases]
        lost: list[int] = await self._renew_script(
            keys=[
                keys.LEASES,
                keys.LEASE_SIGHTINGS,
                keys.WORKERS,
                keys.worker_key(self.worker_id),
                *lease_keys,
            ],
            args=args,
        )
        self._forget([leases[position - 1] for position in lost])

    def _forget(self, lost: list[tuple[str, int]]) -> None:
        """Stop renewing leases a newer attempt took over; the store fences this attempt."""
        for task_id, attempt in lost:
            self.held.discard((task_id, attempt))
            log.warning(
                "lease taken over by a newer attempt",
                extra={"task_id": task_id, "attempt": attempt},
            )

    def _presence(self) -> str:
        info = {
            "id": self.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": self.started_at,
            "last_heartbeat": time.time(),  # for display; liveness is judged by Redis time
            "running": sorted({task_id for task_id, _ in self.held}),
        }
        return json.dumps(info)


async def reap(
    redis: ArqRedis, tasks: TaskRepository, *, lease_ms: int, grace_ms: int
) -> list[str]:
    """Make every task whose lease lapsed runnable again at once, under the same job id."""
    released = []
    for task_id in await lapsed(redis, lease_ms=lease_ms, grace_ms=grace_ms):
        task = await tasks.get(task_id)
        runnable = task is not None and task.status.active and task.running
        if await reap_one(redis, task_id, grace_ms=grace_ms, requeue=runnable):
            released.append(task_id)
            log.warning(
                "lease lapsed; task released for another worker",
                extra={"task_id": task_id, "attempt": task.attempt if task else None},
            )
    return released


async def lapsed(redis: ArqRedis, *, lease_ms: int, grace_ms: int) -> list[str]:
    """Sight overdue leases; the task ids whose lease lapsed and was sighted a grace ago."""
    due = await _SWEEP(redis, [keys.LEASES, keys.LEASE_SIGHTINGS], [str(lease_ms), str(grace_ms)])
    return [task_id.decode() for task_id in due]


async def reap_one(redis: ArqRedis, task_id: str, *, grace_ms: int, requeue: bool) -> bool:
    """Drop a lapsed lease and, with `requeue`, arq's claim on the job, in one atomic step that
    first checks the lease is still lapsed; True when the job was made runnable again."""
    job_id = DIGEST.job_id(task_id)
    outcome = await _REAP(
        redis,
        [
            keys.LEASES,
            keys.LEASE_SIGHTINGS,
            keys.lease_key(task_id),
            *arqstore.reclaim_keys(job_id),
        ],
        [task_id, str(grace_ms), "1" if requeue else "0", job_id],
    )
    if outcome == NO_JOB:
        await enqueue_digest(redis, task_id)
    elif outcome == REQUEUED:
        await arqstore.wake(redis)
    return outcome in (REQUEUED, NO_JOB)
