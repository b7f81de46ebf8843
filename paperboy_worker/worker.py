"""Wiring: the arq worker settings, and the clients its jobs share."""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
from arq import cron, func
from redis.exceptions import RedisError

from paperboy_worker.callback_job import deliver_callback
from paperboy_worker.context import WorkerContext
from paperboy_worker.daily import catch_up, daily_cron, daily_run
from paperboy_worker.digest_job import generate_digest
from paperboy_worker.email_job import job_timeout, send_email
from paperboy_worker.fetch_job import fetch_sources
from paperboy_worker.lease import Heartbeat
from paperboy_worker.pipeline.writer import OfflineWriter, Writer
from paperboy_worker.reconcile import start_sweeps
from paperboy_worker.retention import clean_up
from shared import arqstore, keys, queue
from shared.lifecycle import DIGEST, FETCH, TaskKind
from shared.logs import configure_logging
from shared.metrics import Metrics
from shared.ratelimit import RateLimiter
from shared.settings import Settings
from shared.store import open_backend
from shared.tasks import TaskRepository

if TYPE_CHECKING:
    import openai

METRICS_FLUSH_SECONDS = 1.0


async def on_startup(ctx: WorkerContext) -> None:
    settings = ctx["settings"]
    configure_logging(settings)
    ctx["worker_id"] = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    ctx["metrics"] = Metrics(ctx["redis"])
    await ctx["metrics"].start(METRICS_FLUSH_SECONDS)
    ctx["backend"] = await open_backend(settings)
    ctx["tasks"] = TaskRepository(ctx["backend"])
    ctx["http"] = httpx.AsyncClient(
        timeout=httpx.Timeout(30, connect=10),
        follow_redirects=False,
        headers={"User-Agent": "Paperboy/0.1 (research digests)"},
    )
    # Callbacks get their own client: no proxies from the environment (they would break the
    # pinned-address TLS check), no cookies or keep-alive shared between receivers.
    ctx["callback_http"] = httpx.AsyncClient(
        trust_env=False, follow_redirects=False, limits=httpx.Limits(max_keepalive_connections=0)
    )
    ctx["llm"], ctx["writer"] = _writer(ctx)
    ctx["heartbeat"] = Heartbeat(ctx["redis"], settings, ctx["worker_id"])
    await ctx["heartbeat"].start()
    ctx["sweeps"] = start_sweeps(ctx)
    if settings.orchestration_enabled:
        await catch_up(ctx)


async def on_shutdown(ctx: WorkerContext) -> None:
    for sweep in ctx.get("sweeps", []):
        await sweep.stop()
    if "redis" in ctx:
        # arq has given back the claims of the jobs it cancelled: another worker takes them now.
        with contextlib.suppress(RedisError):
            await arqstore.wake(ctx["redis"])
    if "metrics" in ctx:
        await ctx["metrics"].stop()
    if "heartbeat" in ctx:
        await ctx["heartbeat"].stop()
    if "http" in ctx:
        await ctx["http"].aclose()
    if "callback_http" in ctx:
        await ctx["callback_http"].aclose()
    if "writer" in ctx:
        await ctx["writer"].close()
    if ctx.get("llm") is not None:
        await ctx["llm"].close()  # type: ignore[union-attr]
    if "backend" in ctx:
        await ctx["backend"].close()


def _writer(ctx: WorkerContext) -> tuple[openai.AsyncOpenAI | None, Writer]:
    """The LLM writer, or the offline one; a process-wide client and a cluster-wide limiter."""
    settings = ctx["settings"]
    if settings.llm_provider == "offline":
        return None, OfflineWriter()
    # Imported only here: the provider's SDK costs an idle worker about 18 MiB of memory,
    # which an offline worker has no use for.
    from paperboy_worker.llm import LLMWriter, llm_budgets, llm_client, llm_model

    client = llm_client(settings, timeout=settings.llm_timeout_seconds)
    if client is None:
        return None, OfflineWriter()
    # The client's pool, connect and write timeouts bound when a request reaches the provider.
    limiter = RateLimiter(
        ctx["redis"],
        rpm=settings.llm_rpm,
        tpm=settings.llm_tpm,
        transit=3 * settings.llm_timeout_seconds,
    )
    writer = LLMWriter(
        client,
        llm_model(settings),
        limiter,
        prices=settings.llm_prices,
        rate_limit_retries=settings.llm_rate_limit_retries,
        max_inline_wait=settings.llm_max_inline_wait_seconds,
        max_limiter_wait=settings.llm_max_limiter_wait_seconds,
        metrics=ctx["metrics"],
        api_mode=settings.llm_api_mode,
        budgets=llm_budgets(settings),
    )
    return client, writer


def _daily(settings: Settings) -> list[Any]:
    if not settings.orchestration_enabled:
        return []
    # keep_result outlives any clock skew between workers, so a late duplicate of the slot is
    # refused by arq (and would create nothing anyway: task ids are deterministic).
    slot = cron(
        daily_cron,  # type: ignore[arg-type]
        name="daily_cron",
        hour={settings.orchestration_hour_utc},
        minute={0},
        second={0},
        timeout=60,
        keep_result=3600,
        max_tries=3,
    )
    return [slot]


def _attempts(settings: Settings, kind: TaskKind[Any], job: Callable[..., Any]) -> Any:
    """A kind's job. arq counts pickups, not failures: the kind's own budgets (counted in the
    store) end a task first, and arq's limits only backstop them."""
    policy = kind.policy(settings)
    pickups = policy.max_failures + policy.max_interruptions + 2
    return func(job, name=kind.job, timeout=policy.timeout + 60, max_tries=pickups)


def worker_settings(settings: Settings) -> dict[str, Any]:
    """The keyword arguments of arq's `Worker`, built from settings at the entry point."""
    return {
        "functions": [
            _attempts(settings, DIGEST, generate_digest),
            _attempts(settings, FETCH, fetch_sources),
            func(daily_run, name=keys.DAILY_RUN, timeout=settings.task_timeout, max_tries=3),  # type: ignore[arg-type]
            func(
                deliver_callback,  # type: ignore[arg-type]
                name=keys.DELIVER_CALLBACK,
                timeout=settings.callback_timeout_seconds * 3 + 30,
                max_tries=10_000,
            ),
            func(send_email, name=keys.SEND_EMAIL, timeout=job_timeout(settings), max_tries=10_000),  # type: ignore[arg-type]
        ],
        "cron_jobs": [
            *_daily(settings),
            cron(
                clean_up,  # type: ignore[arg-type]
                name="retention",
                hour={3},
                minute={17},
                second={0},
                timeout=600,
                keep_result=3600,
                max_tries=3,
            ),
        ],
        "queue_name": keys.QUEUE,
        "redis_settings": queue.redis_settings(settings),
        "job_serializer": queue.serialize,
        "job_deserializer": queue.deserialize,
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "ctx": {"settings": settings},
        "max_jobs": settings.worker_max_jobs,
        "job_timeout": settings.digest_task_timeout + 60,
        # Results live in the store; no arq result key means a finished id can be queued again.
        "keep_result": 0,
        "poll_delay": settings.worker_poll_delay,
        "queue_read_limit": max(100, settings.worker_max_jobs * 20),
        "job_completion_wait": settings.worker_shutdown_grace,
        "health_check_interval": 30,
        "health_check_key": arqstore.health_check_key(socket.gethostname()),
    }
