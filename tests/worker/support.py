"""What the in-process worker tests share: a `WorkerContext` as the worker builds it, on the
test Redis (our Lua scripts need a real server) and a temporary SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from arq.jobs import JobStatus

from paperboy_worker.context import WorkerContext
from paperboy_worker.lease import Heartbeat
from paperboy_worker.pipeline.writer import OfflineWriter
from shared import queue
from shared.metrics import Metrics
from shared.models import DigestTask
from shared.settings import Settings
from shared.store import open_backend
from shared.tasks import TaskRepository
from tests.support import ROOT, digest_body

ARXIV_URL = "http://arxiv.test/api/query"
SAMPLE = ROOT / "paperboy_worker/samples/arxiv_sample.xml"
WORKER_ID = "worker-in-process"


def worker_settings(tmp_path: Path, redis_url: str, **overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "redis_url": redis_url,
        "sqlite_path": tmp_path / "paperboy.db",
        "arxiv_sample_path": SAMPLE,
        "arxiv_api_url": ARXIV_URL,
        "arxiv_page_delay_seconds": 0,
        "retry_backoff_seconds": (10, 30),
        "callback_allow_private_networks": True,
        "reconcile_grace_seconds": 0,
        **overrides,
    }
    return Settings(**fields)


@asynccontextmanager
async def worker_context(settings: Settings) -> AsyncIterator[WorkerContext]:
    """The jobs' context without arq: the clients `on_startup` opens, closed on exit."""
    redis = await queue.open_pool(settings, retries=1)
    backend = await open_backend(settings)
    async with httpx.AsyncClient() as http, httpx.AsyncClient(trust_env=False) as callbacks:
        ctx: WorkerContext = {
            "redis": redis,
            "settings": settings,
            "backend": backend,
            "tasks": TaskRepository(backend),
            "http": http,
            "callback_http": callbacks,
            "worker_id": WORKER_ID,
            "heartbeat": Heartbeat(redis, settings, WORKER_ID),
            "metrics": Metrics(redis),
            "writer": OfflineWriter(),
            "llm": None,
        }
        try:
            yield ctx
        finally:
            await backend.close()
            await redis.aclose()


def digest(task_id: str = "t-digest", **fields: Any) -> DigestTask:
    return DigestTask(task_id=task_id, request=digest_body(), **fields)


async def queued(ctx: WorkerContext, job_id: str) -> bool:
    return await queue.job_status(ctx["redis"], job_id) in {JobStatus.queued, JobStatus.deferred}
