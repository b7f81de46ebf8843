"""Email: the `send_email` job, the digest's hooks that feed it, and the reconciler's sweep.

One job per delivery key sends its email; a send the provider did not take is retried by the
same job on `EMAIL_BACKOFF_SECONDS`. A send whose outcome is unknown is `ambiguous`: with Resend
it is retried under the same `Idempotency-Key` while the provider's window lasts, and Resend
drops the copy. SMTP has no such key, so there an ambiguous send is never repeated and waits for
an operator: one subscriber getting the digest twice is the failure this module exists to avoid.

That includes a worker killed during a send. The record then says `sending` with no attempt
alive; nothing tells whether the server got the message, so it becomes `ambiguous` too (and with
Resend is retried under the same key). A worker killed before `sending` leaves `generated`,
which is simply sent.
"""

from __future__ import annotations

import asyncio
import html
import logging
from datetime import date, timedelta

from arq import Retry
from arq.jobs import JobStatus

from paperboy_worker.context import WorkerContext
from shared import keys, queue
from shared.deliveries import (
    BEFORE_DIGEST,
    SENDABLE,
    Delivery,
    DeliveryKind,
    DeliveryRepository,
    DeliveryState,
    digest_delivery,
)
from shared.errors import StoreError
from shared.mail import (
    Ambiguous,
    Email,
    Failed,
    Mailer,
    Retryable,
    Senders,
    SendOutcome,
    Sent,
    digest_email,
    open_mailer,
    senders,
    welcome_email,
)
from shared.mail.message import IDEMPOTENCY_WINDOW_SECONDS, digest_key
from shared.models import DigestTask, TaskStatus, stamp, utcnow
from shared.profiles import ProfileRepository
from shared.retry import backoff_delay
from shared.settings import Settings
from shared.store import Cond

log = logging.getLogger("paperboy.email")

# Only these providers drop a second request with a key they have seen.
IDEMPOTENT_PROVIDERS = frozenset({"resend"})
# Past the mailer's own timeout, a send that has not ended is cut and counted ambiguous.
SEND_MARGIN_SECONDS = 2.0
# The store writes around a send, within arq's limit for the job.
STORE_MARGIN_SECONDS = 10.0
LIVE = frozenset({JobStatus.queued, JobStatus.deferred, JobStatus.in_progress})


def send_timeout(settings: Settings) -> float:
    return settings.email_timeout_seconds + SEND_MARGIN_SECONDS


def job_timeout(settings: Settings) -> float:
    """arq's limit for one run of the job: a send, and the store writes around it."""
    return send_timeout(settings) + STORE_MARGIN_SECONDS


# The daily run's hook: one call per subscriber


async def open_delivery(
    ctx: WorkerContext,
    user_id: str,
    email: str,
    source_date: date,
    task_id: str,
    *,
    retry_failed: bool = False,
) -> None:
    """The delivery of this subscriber's digest, `pending` until the digest starts; with
    `retry_failed`, a failed one is tried again. A sent one is never touched."""
    deliveries = DeliveryRepository(ctx["backend"])
    if await deliveries.create(digest_delivery(user_id, email, source_date, task_id)):
        return
    existing = await deliveries.get(digest_key(source_date, user_id))
    if retry_failed and existing is not None and existing.state is DeliveryState.FAILED:
        await _retry(ctx, deliveries, existing)


async def _retry(ctx: WorkerContext, deliveries: DeliveryRepository, failed: Delivery) -> None:
    """Send again when the digest is there; else make the digest again, then send."""
    task = await ctx["tasks"].get(failed.task_id) if failed.task_id else None
    if task is not None and task.status is TaskStatus.COMPLETED:
        if await deliveries.reopen(failed, DeliveryState.GENERATED) is not None:
            await queue.enqueue_send(ctx["redis"], failed.delivery_key)
        return
    if task is None or await ctx["tasks"].reopen(task.task_id) is None:
        return
    if await deliveries.reopen(failed, DeliveryState.PENDING) is not None:
        await queue.enqueue_digest(ctx["redis"], task.task_id)
    log.info("failed delivery retried", extra={"delivery_key": failed.delivery_key})


# The digest's hooks: one call each from the digest job


async def digest_started(ctx: WorkerContext, task: DigestTask) -> None:
    """A daily digest began: the delivery is `generating`; the profile says which digest."""
    if task.user_id is None or task.source_date is None:
        return
    key = digest_key(date.fromisoformat(task.source_date), task.user_id)
    try:
        moved = await DeliveryRepository(ctx["backend"]).generating(key, task.task_id)
        # Once per making of the digest: its first attempt, or the first after a retry_failed.
        if moved is not None or task.attempt == 1:
            await ProfileRepository(ctx["backend"]).digest_started(task.user_id, task.task_id)
    except StoreError as exc:  # cosmetic: the digest's end moves the delivery on from pending
        log.warning("could not record the digest's start: %s", exc, extra={"task_id": task.task_id})


async def notify_by_email(ctx: WorkerContext, task: DigestTask) -> None:
    """A daily digest ended: write it back to the profile and queue its email, or fail the
    delivery with the digest's error. Nothing for a digest that is not a daily one."""
    if task.user_id is None or task.source_date is None:
        return
    try:
        await _digest_ended(ctx, task, task.user_id, date.fromisoformat(task.source_date))
    except StoreError as exc:  # the delivery stays before `generated`; the reconciler retries
        log.warning("could not record the digest's end: %s", exc, extra={"task_id": task.task_id})


async def _digest_ended(ctx: WorkerContext, task: DigestTask, user_id: str, day: date) -> None:
    key = digest_key(day, user_id)
    deliveries = DeliveryRepository(ctx["backend"])
    if task.status is TaskStatus.COMPLETED and task.result is not None:
        await ProfileRepository(ctx["backend"]).digest_completed(user_id, task.task_id, task.result)
        if await deliveries.generated(key, task.task_id) is not None:
            await queue.enqueue_send(ctx["redis"], key)
        return
    error = task.error or f"the digest ended {task.status.value}"
    if await deliveries.digest_failed(key, error) is not None:
        ctx["metrics"].inc("paperboy_emails", kind=DeliveryKind.DIGEST.value, outcome="failed")


# The send job


async def send_email(ctx: WorkerContext, delivery_key: str) -> str:
    settings = ctx["settings"]
    mailer = open_mailer(settings, ctx["http"])
    sender = senders(settings)
    if mailer is None or sender is None:
        return "no email provider"
    deliveries = DeliveryRepository(ctx["backend"])
    try:
        delivery = await _ready(ctx, deliveries, delivery_key)
        if delivery is None:
            return "nothing to send"
        email = await _compose(ctx, delivery, sender)
        if isinstance(email, str):
            await deliveries.cannot_send(delivery, email)
            _count(ctx, delivery, "failed")
            return "failed"
        sending = await deliveries.begin_send(delivery)
        if sending is None:
            return "claimed elsewhere"
        outcome = await _send(ctx, deliveries, sending, mailer, email)
        return await _record(ctx, deliveries, sending, outcome)
    except StoreError as exc:
        delay = backoff_delay(settings.email_backoff_seconds, ctx.get("job_try", 1))
        log.warning("store unavailable; send retried in %.0fs: %s", delay, exc)
        raise Retry(defer=delay) from exc


async def _ready(ctx: WorkerContext, deliveries: DeliveryRepository, key: str) -> Delivery | None:
    """The delivery if this job may send it now."""
    delivery = await deliveries.get(key)
    if delivery is not None and delivery.state is DeliveryState.SENDING:
        # This job is the only one for the key, so a `sending` it finds is an attempt that died.
        delivery = await deliveries.ambiguous(delivery, "the worker stopped during the send")
        if delivery is not None:
            _count(ctx, delivery, "ambiguous")
    if delivery is None or delivery.state not in SENDABLE:
        return None
    if delivery.state is DeliveryState.AMBIGUOUS and not may_resend(ctx["settings"], delivery):
        log.warning("ambiguous send left for an operator", extra={"delivery_key": key})
        return None
    return delivery


def may_resend(settings: Settings, delivery: Delivery) -> bool:
    """Whether an ambiguous send may be repeated: same key, a provider that honours it, and
    inside its window."""
    return settings.email_provider in IDEMPOTENT_PROVIDERS and delivery.window_open()


async def _compose(ctx: WorkerContext, delivery: Delivery, sender: Senders) -> Email | str:
    """The message, or why there can be none."""
    if delivery.kind is DeliveryKind.WELCOME:
        profile = await ProfileRepository(ctx["backend"]).get(delivery.user_id)
        name = profile.get("name") if profile else None
        return welcome_email(
            to=delivery.email,
            sender=sender.welcome,
            user_id=delivery.user_id,
            html=welcome_html(name if isinstance(name, str) else None),
        )
    task = await ctx["tasks"].get(delivery.task_id) if delivery.task_id else None
    if task is None or task.result is None or delivery.source_date is None:
        return "the digest has no HTML to send"
    name = task.request.get("user_info", {}).get("name")
    return digest_email(
        to=delivery.email,
        sender=sender.digest,
        name=name if isinstance(name, str) else None,
        source_date=date.fromisoformat(delivery.source_date),
        user_id=delivery.user_id,
        task_id=task.task_id,
        html=task.result,
    )


def welcome_html(name: str | None) -> str:
    greeting = (
        f"Welcome to Paperboy, {html.escape(name.strip())}!"
        if name and name.strip()
        else ("Welcome to Paperboy!")
    )
    return (
        f"<html><body><h1>{greeting}</h1>"
        "<p>Every day Paperboy reads the new papers and news for you and sends the few that "
        "matter to your goals. Your first digest arrives with the next daily run.</p>"
        "</body></html>"
    )


async def _send(
    ctx: WorkerContext,
    deliveries: DeliveryRepository,
    sending: Delivery,
    mailer: Mailer,
    email: Email,
) -> SendOutcome:
    """The provider's outcome, bounded in time; a send cut short is ambiguous."""
    seconds = send_timeout(ctx["settings"])
    try:
        async with asyncio.timeout(seconds):
            return await mailer.send(email)
    except TimeoutError:
        return Ambiguous(f"no outcome from the provider within {seconds:.0f}s")
    except asyncio.CancelledError:
        # Shutdown or arq's limit, mid-send: say so now rather than leave `sending`.
        reason = "interrupted during the send"
        await asyncio.shield(deliveries.ambiguous(sending, reason))
        raise


async def _record(
    ctx: WorkerContext, deliveries: DeliveryRepository, sending: Delivery, outcome: SendOutcome
) -> str:
    settings = ctx["settings"]
    extra = {"delivery_key": sending.delivery_key, "attempts": sending.attempts}
    if isinstance(outcome, Sent):
        await deliveries.sent(sending, outcome.message_id)
        log.info("email sent", extra={**extra, "provider_message_id": outcome.message_id})
        return _count(ctx, sending, "sent")
    if isinstance(outcome, Failed):
        await deliveries.failed(sending, outcome.reason)
        log.error("email refused: %s", outcome.reason, extra=extra)
        return _count(ctx, sending, "failed")
    if isinstance(outcome, Retryable):
        if sending.attempts >= settings.email_max_tries:
            reason = f"{outcome.reason} (gave up after {sending.attempts} tries)"
            await deliveries.failed(sending, reason)
            log.error("email given up: %s", reason, extra=extra)
            return _count(ctx, sending, "failed")
        await deliveries.not_sent(sending, outcome.reason)
        _count(ctx, sending, "retried")
        delay = backoff_delay(settings.email_backoff_seconds, sending.attempts, outcome.retry_after)
        log.warning("email not taken, retrying in %.0fs: %s", delay, outcome.reason, extra=extra)
        raise Retry(defer=delay)
    return await _ambiguous(ctx, deliveries, sending, outcome)


async def _ambiguous(
    ctx: WorkerContext, deliveries: DeliveryRepository, sending: Delivery, outcome: Ambiguous
) -> str:
    settings = ctx["settings"]
    extra = {"delivery_key": sending.delivery_key, "attempts": sending.attempts}
    ambiguous = await deliveries.ambiguous(sending, outcome.reason)
    _count(ctx, sending, "ambiguous")
    if ambiguous is None or not may_resend(settings, ambiguous):
        log.error("email outcome unknown; left for an operator: %s", outcome.reason, extra=extra)
        return "ambiguous"
    if sending.attempts >= settings.email_max_tries:
        log.error("email outcome unknown after the last try: %s", outcome.reason, extra=extra)
        return "ambiguous"
    delay = backoff_delay(settings.email_backoff_seconds, sending.attempts)
    log.warning("email outcome unknown; same key again in %.0fs", delay, extra=extra)
    raise Retry(defer=delay)


def _count(ctx: WorkerContext, delivery: Delivery, outcome: str) -> str:
    ctx["metrics"].inc("paperboy_emails", kind=delivery.kind.value, outcome=outcome)
    return outcome


# The reconciler's sweep


async def reconcile_deliveries(ctx: WorkerContext) -> int:
    """Put back what the store says should be under way: a digest that ended without moving its
    delivery, a send with no live job, a `sending` whose attempt is long dead. The number of
    deliveries it moved or queued."""
    settings = ctx["settings"]
    deliveries = DeliveryRepository(ctx["backend"])
    moved = 0
    # Only digests older than one attempt's limit: younger ones are simply still being made.
    digest_cutoff = _ago(settings.digest_task_timeout + settings.reconcile_grace_seconds)
    stuck = await deliveries.in_states(BEFORE_DIGEST, Cond("updated_at", "lt", digest_cutoff))
    for delivery in stuck:
        moved += await _advance(ctx, delivery)
    moved += await _stale_sends(ctx, deliveries)
    for delivery in await _sendable(settings, deliveries):
        moved += await _requeue(ctx, delivery)
    return moved


def _ago(seconds: float) -> str:
    return stamp(utcnow() - timedelta(seconds=seconds))


async def _sendable(settings: Settings, deliveries: DeliveryRepository) -> list[Delivery]:
    """Ready ones, and ambiguous ones that may be sent again: those left for an operator pile
    up over the days and must not crowd the ready ones out of a page."""
    ready = await deliveries.in_states([DeliveryState.GENERATED])
    if settings.email_provider not in IDEMPOTENT_PROVIDERS:
        return ready
    window = _ago(IDEMPOTENCY_WINDOW_SECONDS)
    unknown = await deliveries.in_states(
        [DeliveryState.AMBIGUOUS], Cond("first_send_at", "gt", window)
    )
    return ready + unknown


async def _requeue(ctx: WorkerContext, delivery: Delivery) -> int:
    if delivery.state is DeliveryState.AMBIGUOUS and not may_resend(ctx["settings"], delivery):
        return 0
    key = delivery.delivery_key
    if await queue.job_status(ctx["redis"], keys.email_job_id(key)) in LIVE:
        return 0
    if not await queue.enqueue_send(ctx["redis"], key):
        return 0
    log.warning("email had no live job; queued again", extra={"delivery_key": key})
    return 1


async def _advance(ctx: WorkerContext, delivery: Delivery) -> int:
    """A delivery whose digest is already terminal: record it as the digest job would have."""
    task = await ctx["tasks"].get(delivery.task_id) if delivery.task_id else None
    if task is None or not task.status.terminal:
        return 0
    await notify_by_email(ctx, task)
    return 1


async def _stale_sends(ctx: WorkerContext, deliveries: DeliveryRepository) -> int:
    """`sending` for longer than any live attempt can take: its worker died mid-send."""
    settings = ctx["settings"]
    cutoff = _ago(job_timeout(settings) + settings.reconcile_grace_seconds)
    stale = 0
    sending = await deliveries.in_states([DeliveryState.SENDING], Cond("updated_at", "lt", cutoff))
    for delivery in sending:
        if await deliveries.ambiguous(delivery, "the worker stopped during the send") is not None:
            _count(ctx, delivery, "ambiguous")
            stale += 1
    return stale
