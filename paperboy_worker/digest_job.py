"""The `generate_digest` job: one attempt of a digest task, run by the common lifecycle."""

from __future__ import annotations

from paperboy_worker import email_job
from paperboy_worker.context import WorkerContext
from paperboy_worker.lifecycle import run_task
from paperboy_worker.pipeline.run import Attempt
from shared.lifecycle import DIGEST
from shared.models import DigestTask
from shared.store import Row


async def generate_digest(ctx: WorkerContext, task_id: str) -> str:
    return await run_task(ctx, DIGEST, task_id, make_digest)


async def make_digest(ctx: WorkerContext, task: DigestTask) -> Row:
    """The digest's work: the pipeline, which returns the result's columns."""
    await email_job.digest_started(ctx, task)
    return await Attempt(ctx, task, ctx["writer"]).run()
