"""The typed arq context every job receives."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, TypedDict

import httpx
from arq.connections import ArqRedis

from paperboy_worker.pipeline.writer import Writer
from shared.metrics import Metrics
from shared.settings import Settings
from shared.store import Backend
from shared.tasks import TaskRepository

if TYPE_CHECKING:
    # Types only: an offline worker never loads the provider's SDK.
    import openai

    from paperboy_worker.lease import Heartbeat
    from paperboy_worker.sweeps import Periodic


class WorkerContext(TypedDict, total=False):
    # set by arq
    redis: ArqRedis
    job_id: str
    job_try: int
    enqueue_time: datetime
    score: int
    # opened in on_startup, closed in on_shutdown
    settings: Settings
    backend: Backend
    tasks: TaskRepository
    http: httpx.AsyncClient
    callback_http: httpx.AsyncClient
    worker_id: str
    heartbeat: Heartbeat
    sweeps: list[Periodic]
    metrics: Metrics
    writer: Writer
    llm: openai.AsyncOpenAI | None
