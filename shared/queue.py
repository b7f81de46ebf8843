"""The arq queue as both sides use it: connections, and the typed enqueue helpers.

What reads or writes arq's own keys and job format is in `shared.arqstore`; the names the rest
of the code calls through this module (the serializer, `job_status`, `queue_summary`) are
exported from there.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared import keys
from shared.arqstore import deserialize as deserialize
from shared.arqstore import enqueue
from shared.arqstore import job_status as job_status
from shared.arqstore import queue_summary as queue_summary
from shared.arqstore import serialize as serialize
from shared.lifecycle import DIGEST, TaskKind
from shared.settings import Settings


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


async def enqueue_task(
    redis: ArqRedis, kind: TaskKind[Any], task_id: str, *, defer: float = 0
) -> bool:
    """Queue a task's attempt; False when its job is already queued, running or waiting to
    retry."""
    return await enqueue(redis, kind.job, kind.job_id(task_id), task_id, defer=defer)


async def enqueue_digest(redis: ArqRedis, task_id: str, *, defer: float = 0) -> bool:
    return await enqueue_task(redis, DIGEST, task_id, defer=defer)


async def enqueue_daily_run(
    redis: ArqRedis, source_date: date, run_id: str = "cron", *, retry_failed: bool = False
) -> bool:
    """Queue the daily fan-out for a date; each run id is its own run (all of them idempotent)."""
    job_id = f"daily:{source_date.isoformat()}:{run_id}"
    return await enqueue(redis, keys.DAILY_RUN, job_id, source_date.isoformat(), retry_failed)


async def enqueue_callback(
    redis: ArqRedis, task_id: str, *, kind: TaskKind[Any] = DIGEST, defer: float = 0
) -> bool:
    job_id = kind.callback_job_id(task_id)
    return await enqueue(redis, keys.DELIVER_CALLBACK, job_id, task_id, kind.name, defer=defer)


async def enqueue_send(redis: ArqRedis, delivery_key: str, *, defer: float = 0) -> bool:
    """Queue an email's send; False when its job is already queued, running or waiting to retry."""
    job_id = keys.email_job_id(delivery_key)
    return await enqueue(redis, keys.SEND_EMAIL, job_id, delivery_key, defer=defer)
