"""Everything that reads or writes arq's Redis keys or its job format.

arq's public API would cost three round trips per enqueue and no way to drop a claim; these few
operations reach under it instead. Each leans on how arq 0.28 lays out its data, so they live
here together, take every key name from `arq.constants`, and
`tests/shared/test_arq_contract.py` checks each assumption against the installed arq. The
worker's subclass hooks on arq's `Worker` are in `paperboy_worker/poller.py`, pinned by the same
test.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

from arq.connections import ArqRedis
from arq.constants import (
    health_check_key_suffix,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from arq.jobs import Job, JobStatus, serialize_job
from arq.utils import timestamp_ms
from redis.asyncio import Redis

from shared.keys import QUEUE, WAKE
from shared.luascript import LuaScript

# A job's key must outlive its whole retry schedule: arq never refreshes it.
JOB_EXPIRES = timedelta(days=3)
# Entries kept on the wake list: enough to wake every idle worker of a large cluster at once,
# few enough that pushes nobody pops (every worker busy) cost nothing to keep.
WAKE_LIST_LIMIT = 64


def job_key(job_id: str) -> str:
    """string: the serialized job, as long as it is queued or running."""
    return job_key_prefix + job_id


def in_progress_key(job_id: str) -> str:
    """string: a worker's claim on the job while it runs; arq skips a job that has one."""
    return in_progress_key_prefix + job_id


def result_key(job_id: str) -> str:
    """string: the finished job's result, kept for `keep_result`; it blocks a new enqueue."""
    return result_key_prefix + job_id


def retry_key(job_id: str) -> str:
    """string: how many times the job was started, so a reclaimed job counts as a new try."""
    return retry_key_prefix + job_id


def health_check_key(host: str) -> str:
    return f"{QUEUE}{health_check_key_suffix}:{host}"


def serialize(data: dict[str, Any]) -> bytes:
    """JSON instead of arq's default pickle: whoever can write to Redis cannot run code."""
    return json.dumps(data, default=repr).encode()


def deserialize(raw: bytes) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(raw)
    return value


# arq's `enqueue_job` in one round trip instead of three (WATCH/EXISTS, then MULTI/PSETEX/ZADD/
# EXEC): the same keys, job format and refusal of an id that is queued, running or has a result,
# checked and written atomically by the server. Enqueueing is most of the API's work per request.
# Each new job also pushes one entry to the wake list, which wakes one idle worker blocked on it
# (paperboy_worker/poller.py): a job due now is picked up at once, and a deferred one makes that
# worker wait next until the job's time instead of a wait planned before the job existed.
_ENQUEUE = LuaScript(
    """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('PSETEX', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
redis.call('LPUSH', KEYS[4], '1')
redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[5]) - 1)
return 1
"""
)


async def wake(redis: ArqRedis) -> None:
    """Wake one idle worker for a job that became runnable without an enqueue: a claim given
    back on shutdown, a lapsed lease reaped, a wake passed on by a worker that is full."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.lpush(WAKE, 1)
        pipe.ltrim(WAKE, 0, WAKE_LIST_LIMIT - 1)
        await pipe.execute()


async def enqueue(
    redis: ArqRedis, function: str, job_id: str, *args: Any, defer: float = 0
) -> bool:
    """Queue `function(*args)` under `job_id`; False when that id is already known to arq."""
    now = timestamp_ms()
    job = serialize_job(function, args, {}, None, now, serializer=serialize)
    expires_ms = int(JOB_EXPIRES.total_seconds() * 1000)
    created = await _ENQUEUE(
        redis,
        [job_key(job_id), result_key(job_id), QUEUE, WAKE],
        [expires_ms, job, now + int(defer * 1000), job_id, WAKE_LIST_LIMIT],
    )
    return bool(created)


# The earliest job nobody runs: arq keeps a running job in the queue at its old score, so the
# first entries may be claimed (an in-progress key) and are skipped. Returns its score, which
# may be in the past (due now: a retry that came due while the worker planned its wait).
# KEYS: queue. ARGV: in-progress key prefix, how many entries to look at.
_NEXT_UNCLAIMED = LuaScript(
    """
local entries = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1, 'WITHSCORES')
for i = 1, #entries, 2 do
  if redis.call('EXISTS', ARGV[1] .. entries[i]) == 0 then return entries[i + 1] end
end
return false
"""
)
# Enough to look past every running job of a worker fleet.
_NEXT_LOOKAHEAD = 1000


async def next_job_ms(redis: Redis, queue: str) -> float | None:
    """The score (unix ms) of the queue's earliest job that no worker has claimed, if any: in
    the future for a deferred job, now or earlier for one that is due."""
    score = await _NEXT_UNCLAIMED(redis, [queue], [in_progress_key_prefix, _NEXT_LOOKAHEAD])
    return float(score) if score else None


async def job_status(redis: ArqRedis, job_id: str) -> JobStatus:
    job = Job(job_id, redis, _queue_name=QUEUE, _deserializer=deserialize)
    status: JobStatus = await job.status()
    return status


async def queue_summary(redis: ArqRedis) -> dict[str, Any]:
    """Queued (runnable now), deferred (waiting for a retry or a spread start), running."""
    now = time.time() * 1000
    entries = await redis.zrange(QUEUE, 0, -1, withscores=True)
    ids = [member.decode() for member, _ in entries]
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.exists(in_progress_key(job_id))
        running_flags = await pipe.execute() if ids else []
    waiting = [
        score for (_, score), running in zip(entries, running_flags, strict=True) if not running
    ]
    queued_scores = [score for score in waiting if score <= now]
    return {
        "queued": len(queued_scores),
        "running": sum(1 for flag in running_flags if flag),
        "deferred": len(waiting) - len(queued_scores),
        "oldest_queued_age_s": round((now - min(queued_scores)) / 1000, 3) if queued_scores else 0,
    }


def reclaim_keys(job_id: str) -> list[str]:
    """The keys a script needs to make a claimed job runnable again at once: arq's claim (to
    delete), the job (which must still exist) and the queue (to score it now). arq then picks it
    up at its next poll as a new try of the same job, its retry count kept."""
    return [in_progress_key(job_id), job_key(job_id), QUEUE]
