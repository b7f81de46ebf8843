"""The arq queue as both sides use it: connection settings, serializer and enqueue helpers."""

from __future__ import annotations

import json
import time
from datetime import date, timedelta
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.jobs import Job, JobStatus
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared import keys
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


async def enqueue_digest(redis: ArqRedis, task_id: str, *, defer: float = 0) -> bool:
    """Queue a digest; False when its job is already queued, running or waiting to retry."""
    job = await redis.enqueue_job(
        keys.GENERATE_DIGEST,
        task_id,
        _job_id=keys.digest_job_id(task_id),
        _queue_name=keys.QUEUE,
        _defer_by=timedelta(seconds=defer) if defer > 0 else None,
        _expires=JOB_EXPIRES,
    )
    return job is not None


async def enqueue_daily_run(redis: ArqRedis, source_date: date, run_id: str = "cron") -> bool:
    """Queue the daily fan-out for a date; each run id is its own run (all of them idempotent)."""
    job = await redis.enqueue_job(
        keys.DAILY_RUN,
        source_date.isoformat(),
        _job_id=f"daily:{source_date.isoformat()}:{run_id}",
        _queue_name=keys.QUEUE,
    )
    return job is not None


async def enqueue_callback(
    redis: ArqRedis, task_id: str, *, kind: str = "digest", defer: float = 0
) -> bool:
    job = await redis.enqueue_job(
        keys.DELIVER_CALLBACK,
        task_id,
        kind,
        _job_id=keys.callback_job_id(task_id, kind),
        _queue_name=keys.QUEUE,
        _defer_by=timedelta(seconds=defer) if defer else None,
        _expires=JOB_EXPIRES,
    )
    return job is not None


async def enqueue_fetch(redis: ArqRedis, task_id: str) -> bool:
    job = await redis.enqueue_job(
        keys.FETCH_SOURCES,
        task_id,
        _job_id=keys.fetch_job_id(task_id),
        _queue_name=keys.QUEUE,
        _expires=JOB_EXPIRES,
    )
    return job is not None


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
