"""The daily run: one digest per eligible profile for yesterday's sources, every day.

Task ids derive from (user, source date), so a date run twice, by two workers at once, by the
cron and by an operator, still creates each digest once.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, date, datetime, timedelta

from pydantic import ValidationError

from paperboy_worker import email_job
from paperboy_worker.context import WorkerContext
from paperboy_worker.pipeline.daily_sources import papers_for
from shared import queue
from shared.mail import senders
from shared.models import DEFAULT_CATEGORIES, DigestRequest, DigestTask
from shared.profiles import NO_ADDRESS, Profile, ProfileRepository, Skipped

log = logging.getLogger("paperboy.daily")

DAILY_NAMESPACE = uuid.UUID("8f1d7a52-3c51-4d7e-9a3e-5b0c2f6d9e11")


def daily_task_id(user_id: str, source_date: date) -> str:
    return str(uuid.uuid5(DAILY_NAMESPACE, f"{user_id}:{source_date.isoformat()}"))


def last_slot(now: datetime, hour: int) -> datetime:
    """The most recent daily slot at `hour`:00 UTC at or before `now`."""
    slot = now.astimezone(UTC).replace(hour=hour, minute=0, second=0, microsecond=0)
    return slot if slot <= now else slot - timedelta(days=1)


def missed_source_date(now: datetime, hour: int, catchup_hours: int) -> date | None:
    """The source date of the last slot if it lies within the catch-up window, else None.

    Running a slot that did run already is harmless (task ids are deterministic), so a worker
    starting inside the window simply runs it.
    """
    slot = last_slot(now, hour)
    if now - slot > timedelta(hours=catchup_hours):
        return None
    return slot.date() - timedelta(days=1)


def request_for(
    profile: Profile, source_date: date, callback_url: str | None, *, allow_private: bool
) -> DigestRequest:
    body = {
        "user_info": {
            "name": profile.name,
            "title": profile.title,
            "goals": profile.goals,
            "news_interest": profile.interests,
        },
        "source_date": source_date.isoformat(),
        "callback_url": callback_url,
    }
    return DigestRequest.model_validate(body, context={"allow_private": allow_private})


async def daily_run(
    ctx: WorkerContext, source_date_text: str, retry_failed: bool = False
) -> dict[str, int]:
    """Create and queue one digest per eligible profile; existing ones are left alone, and with
    `retry_failed` failed deliveries are tried again.

    A subscriber row that cannot make a digest is skipped and logged; the others still run.
    """
    source_date = date.fromisoformat(source_date_text)
    # Fetch the day's papers once, up front, before the digests that share them start.
    await papers_for(ctx, source_date, DEFAULT_CATEGORIES)
    subscribers = await ProfileRepository(ctx["backend"]).eligible()
    skipped = list(subscribers.skipped)
    created = 0
    for profile in subscribers.profiles:
        outcome = await _queue_one(ctx, profile, source_date, created, retry_failed=retry_failed)
        if isinstance(outcome, Skipped):
            skipped.append(outcome)
        else:
            created += outcome
    for skip in skipped:
        log.warning(
            "profile skipped",
            extra={"user_id": skip.user_id, "reason": skip.reason, "source_date": source_date_text},
        )
    total = len(subscribers.profiles) + len(subscribers.skipped)
    log.info(
        "daily run queued digests",
        extra={
            "queued": created,
            "profiles": total,
            "skipped": len(skipped),
            "source_date": source_date_text,
        },
    )
    return {"profiles": total, "created": created, "skipped": len(skipped)}


async def _queue_one(
    ctx: WorkerContext, profile: Profile, source_date: date, index: int, *, retry_failed: bool
) -> Skipped | int:
    """One subscriber's digest (and its delivery, when email is on): 1 if it was created."""
    settings = ctx["settings"]
    try:
        request = request_for(
            profile,
            source_date,
            settings.daily_callback_url,
            allow_private=settings.callback_allow_private_networks,
        )
    except ValidationError as exc:
        return Skipped.invalid(profile.user_id, exc)
    task_id = daily_task_id(profile.user_id, source_date)
    if senders(settings) is not None:
        if not profile.email:
            return Skipped(profile.user_id, NO_ADDRESS)
        await email_job.open_delivery(
            ctx, profile.user_id, profile.email, source_date, task_id, retry_failed=retry_failed
        )
    task = DigestTask(
        task_id=task_id,
        request=request.model_dump(mode="json"),
        user_id=profile.user_id,
        source_date=source_date.isoformat(),
        callback_url=request.callback_url,
        max_attempts=settings.digest_max_tries,
    )
    if not await ctx["tasks"].create(task):
        return 0
    await queue.enqueue_digest(
        ctx["redis"], task.task_id, defer=index * settings.daily_spread_seconds
    )
    return 1


async def daily_cron(ctx: WorkerContext) -> bool:
    """The scheduled slot: yesterday's digests."""
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    return await queue.enqueue_daily_run(ctx["redis"], yesterday)


async def catch_up(ctx: WorkerContext) -> date | None:
    """At worker start: run a slot that was missed while no worker was up."""
    settings = ctx["settings"]
    missed = missed_source_date(
        datetime.now(UTC), settings.orchestration_hour_utc, settings.orchestration_catchup_hours
    )
    if missed is not None:
        await queue.enqueue_daily_run(ctx["redis"], missed)
    return missed
