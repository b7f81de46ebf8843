"""The arq queue as both sides use it: connection settings, serializer and enqueue helpers."""

from __future__ import annotations

import json
import time
from datetime import date, timedelta
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.jobs import Job, JobStatus, serialize_job
from arq.utils import timestamp_ms
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared import keys
from shared.lifecycle import DIGEST, TaskKind
from shared.settings import Settings

# A job's key must outlive its whole retry schedule: arq never refreshes it.
JOB_EXPIRES = timedelta(days=3)


def serialize(data: dict[str, Any]) -> bytes:
    """JSON instead of arq's default pickle: whoever can write to Redis cannot run code."""
    return json.dumps(data, default=repr).encode()


def deserialize(raw: bytes) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(raw)
    return value


def redis_settings(settings: Settings) -> RedisSettings:
    """Connection settings that ride out a Redis restart instead of killing the process."""
    base = RedisSettings.from_dsn(settings.redis_url)
    base.conn_timeout = 2
    base.conn_retries = 30
    base.conn_retry_delay = 1
    base.retry_on_timeout = True
    # OSError covers a refused connect while Redis restarts; redis-py does not retry it by default.
    base.retry_on_error = [RedisConnectionError, RedisTimeoutError, OSError]
    base.retry = Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=12)
    return base


async def open_pool(settings: Settings, *, retries: int | None = None) -> ArqRedis:
    rs = redis_settings(settings)
    if retries is not None:
        rs.conn_retries = retries
    return await create_pool(
        rs, job_serializer=serialize, job_deserializer=deserialize, default_queue_name=keys.QUEUE
    )


# arq's `enqueue_job` in one round trip instead of three (WATCH/EXISTS, then MULTI/PSETEX/ZADD/
# EXEC): the same keys, job format and refusal of an id that is queued, running or has a result,
# checked and written atomically by the server. Enqueueing is most of the API's work per request.
_ENQUEUE = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('PSETEX', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
return 1
"""


async def enqueue(
    redis: ArqRedis, function: str, job_id: str, *args: Any, defer: float = 0
) -> bool:
    """Queue `function(*args)` under `job_id`; False when that id is already known to arq."""
    now = timestamp_ms()
    job = serialize_job(function, args, {}, None, now, serializer=serialize)
    expires_ms = int(JOB_EXPIRES.total_seconds() * 1000)
    keys_ = [keys.ARQ_JOB + job_id, keys.ARQ_RESULT + job_id, keys.QUEUE]
    args_: list[Any] = [expires_ms, job, now + int(defer * 1000), job_id]
    created = await redis.eval(_ENQUEUE, 3, *keys_, *args_)  # type: ignore[misc]
    return bool(created)


async def enqueue_task(
    redis: ArqRedis, kind: TaskKind[Any], task_id: str, *, defer: float = 0
) -> bool:
    """Queue a task's attempt; False when its job is already queued, running or waiting to
    retry."""
    return await enqueue(redis, kind.job, kind.job_id(task_id), task_id, defer=defer)


async def enqueue_digest(redis: ArqRedis, task_id: str, *, defer: float = 0) -> bool:
    return await enqueue_task(redis, DIGEST, task_id, defer=defer)


async def enqueue_daily_run(redis: ArqRedis, source_date: date, run_id: str = "cron") -> bool:
    """Queue the daily fan-out for a date; each run id is its own run (all of them idempotent)."""
    job_id = f"daily:{source_date.isoformat()}:{run_id}"
    return await enqueue(redis, keys.DAILY_RUN, job_id, source_date.isoformat())


async def enqueue_callback(
    redis: ArqRedis, task_id: str, *, kind: TaskKind[Any] = DIGEST, defer: float = 0
) -> bool:
    job_id = kind.callback_job_id(task_id)
    return await enqueue(redis, keys.DELIVER_CALLBACK, job_id, task_id, kind.name, defer=defer)


async def job_status(redis: ArqRedis, job_id: str) -> JobStatus:
    job = Job(job_id, redis, _queue_name=keys.QUEUE, _deserializer=deserialize)
    status: JobStatus = await job.status()
    return status


def connect(settings: Settings) -> ArqRedis:
    """A client that connects lazily and fails fast: the API starts, and answers 503 quickly,
    while Redis is down."""
    redis: ArqRedis = ArqRedis.from_url(
        settings.redis_url,
        socket_connect_timeout=2,
        socket_timeout=5,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    redis.job_serializer = serialize
    redis.job_deserializer = deserialize
    redis.default_queue_name = keys.QUEUE
    return redis


async def queue_summary(redis: ArqRedis) -> dict[str, Any]:
    """Queued (runnable now), deferred (waiting for a retry or a spread start), running."""
    now = time.time() * 1000
    entries = await redis.zrange(keys.QUEUE, 0, -1, withscores=True)
    ids = [member.decode() for member, _ in entries]
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.exists(keys.ARQ_IN_PROGRESS + job_id)
        running_flags = await pipe.execute() if ids else []
    queued_scores = [
        score
        for (_, score), running in zip(entries, running_flags, strict=True)
        if not running and score <= now
    ]
    return {
        "queued": len(queued_scores),
        "running": sum(1 for flag in running_flags if flag),
        "deferred": sum(
            1
            for (_, score), running in zip(entries, running_flags, strict=True)
            if not running and score > now
        ),
        "oldest_queued_age_s": round((now - min(queued_scores)) / 1000, 3) if queued_scores else 0,
    }
