"""The `send_email` job and the digest's email hooks, in-process: a temporary SQLite store, the
real Redis (arq's enqueue is a Lua script), and local stand-ins for Resend and an SMTP server."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq import Retry
from arq.connections import ArqRedis
from arq.jobs import JobStatus
from pydantic import SecretStr, ValidationError

from paperboy_worker.daily import daily_task_id
from paperboy_worker.email_job import (
    digest_started,
    notify_by_email,
    open_delivery,
    reconcile_deliveries,
    send_email,
)
from shared import keys, queue
from shared.deliveries import DeliveryRepository, DeliveryState, welcome_delivery
from shared.lifecycle import DIGEST
from shared.metrics import Metrics
from shared.models import DigestTask, TaskStatus, stamp, utcnow
from shared.settings import Settings, WorkerProcessSettings, load_settings
from shared.store.sqlite import SqliteBackend
from shared.tasks import TaskRepository
from tests.mail_servers import RESEND_KEY, Answer, Inbox, ResendStandIn, resend_stand_in, smtp_inbox
from tests.processes import base_env
from tests.support import BIN, ROOT

DAY = date(2026, 11, 22)
ADA = "00000000-0000-4000-8000-000000000001"
KEY = f"paperboy:{DAY.isoformat()}:{ADA}"
SENDER = "Paperboy Digest <digest@paper-boy.test>"
HTML = "<html><body><h1>Ada's papers</h1></body></html>"


@pytest.fixture
def resend() -> Iterator[ResendStandIn]:
    with resend_stand_in() as stand_in:
        yield stand_in


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with smtp_inbox() as server:
        yield server


def resend_settings(resend: ResendStandIn, **fields: Any) -> Settings:
    values: dict[str, Any] = {
        "email_provider": "resend",
        "resend_api_key": SecretStr(RESEND_KEY),
        "resend_base_url": resend.url,
        "resend_from_address": SENDER,
        "email_timeout_seconds": 0.5,
        "email_backoff_seconds": (1, 2, 4),
    }
    return Settings(**{**values, **fields})


@pytest.fixture
async def store(tmp_path: Path, redis_url: str) -> AsyncIterator[dict[str, Any]]:
    backend = SqliteBackend(tmp_path / "store.db")
    await backend.open()
    redis = ArqRedis.from_url(redis_url)
    http = httpx.AsyncClient()
    yield {
        "backend": backend,
        "tasks": TaskRepository(backend),
        "redis": redis,
        "http": http,
        "metrics": Metrics(redis),
    }
    await http.aclose()
    await redis.aclose()
    await backend.close()


def with_settings(store: dict[str, Any], settings: Settings) -> Any:
    return {**store, "settings": settings}


async def a_digest(ctx: Any, status: TaskStatus = TaskStatus.COMPLETED) -> DigestTask:
    """Ada's daily digest, ended with `status`, and its delivery, as the daily run leaves them."""
    task = DigestTask(
        task_id=daily_task_id(ADA, DAY),
        status=status,
        request={"user_info": {"name": "Ada", "goals": "retrieval"}},
        user_id=ADA,
        source_date=DAY.isoformat(),
        result=HTML if status is TaskStatus.COMPLETED else None,
        error="No papers for the date" if status is TaskStatus.FAILED else None,
    )
    await ctx["tasks"].create(task)
    await ctx["backend"].insert(
        keys.PROFILES, {"user_id": ADA, "email": "ada@example.com", "name": "Ada", "goals": "x"}
    )
    await open_delivery(ctx, ADA, "ada@example.com", DAY, task.task_id)
    return task


async def state_of(ctx: Any, key: str = KEY) -> Any:
    delivery = await DeliveryRepository(ctx["backend"]).get(key)
    assert delivery is not None
    return delivery


async def emails_counted(ctx: Any) -> dict[str, float]:
    await ctx["metrics"].flush()
    snapshot = await ctx["metrics"].snapshot()
    return {k: v for k, v in snapshot.items() if k.startswith("paperboy_emails|")}


# The digest's hooks


async def test_a_started_digest_moves_its_delivery_and_names_itself_on_the_profile(
    store: dict[str, Any], resend: ResendStandIn
) -> None:
    ctx = with_settings(store, resend_settings(resend))
    task = await a_digest(ctx, TaskStatus.PENDING)

    await digest_started(ctx, task.model_copy(update={"attempt": 1}))

    assert (await state_of(ctx)).state is DeliveryState.GENERATING
    profile = await ctx["backend"].get(keys.PROFILES, {"user_id": ADA})
    assert profile["task_id"] == task.task_id and profile["started_at"] is not None


async def test_a_finished_digest_is_written_back_and_its_email_queued(
    store: dict[str, Any], resend: ResendStandIn
) -> None:
    ctx = with_settings(store, resend_settings(resend))
    task = await a_digest(ctx)

    await notify_by_email(ctx, task)

    assert (await state_of(ctx)).state is DeliveryState.GENERATED
    profile = await ctx["backend"].get(keys.PROFILES, {"user_id": ADA})
    assert (profile["task_id"], profile["task_html"]) == (task.task_id, HTML)
    assert profile["completed_at"] is not None
    job_status = await queue.job_status(ctx["redis"], keys.email_job_id(KEY))
    assert job_status is JobStatus.queued


async def test_a_failed_digest_fails_its_delivery_and_sends_nothing(
    store: dict[str, Any], resend: ResendStandIn
) -> None:
    ctx = with_settings(store, resend_settings(resend))
    task = await a_digest(ctx, TaskStatus.FAILED)

    await notify_by_email(ctx, task)

    delivery = await state_of(ctx)
    assert delivery.state is DeliveryState.FAILED
    assert delivery.error == "digest failed: No papers for the date"
    assert await send_email(ctx, KEY) == "nothing to send"
    assert resend.received() == []


# Sending through Resend


async def test_the_send_is_the_resend_contract_and_sent_is_final(
    store: dict[str, Any], resend: ResendStandIn
) -> None:
    ctx = with_settings(store, resend_settings(resend))
    await notify_by_email(ctx, await a_digest(ctx))

    assert await send_email(ctx, KEY) == "sent"
    assert await send_email(ctx, KEY) == "nothing to send"

    [request] = resend.received()
    assert request.path == "/emails"
    assert request.headers["Authorization"] == f"Bearer {RESEND_KEY}"
    assert request.headers["Idempotency-Key"] == KEY
    assert request.body == {
        "from": SENDER,
        "to": ["ada@example.com"],
        "subject": "Paperboy | Ada's Daily Digest",
        "html": HTML,
        "tags": [{"name": "task_id", "value": daily_task_id(ADA, DAY)}],
    }
    delivery = await state_of(ctx)
    assert (delivery.state, delivery.attempts) == (DeliveryState.SENT, 1)
    assert delivery.provider_message_id and delivery.sent_at and delivery.first_send_at
    assert await emails_counted(ctx) == {"paperboy_emails|kind=digest,outcome=sent": 1.0}


async def test_429_and_5xx_are_retried_with_the_same_key(
    store: dict[str, Any], resend: ResendStandIn
) -> None:
    ctx = with_settings(store, resend_settings(resend))
    await notify_by_email(ctx, await a_digest(ctx))
    resend.script += [
        Answer(429, {"name": "rate_limit_exceeded", "message": "Too many requests"}),
        Answer(503, {"name": "internal_server_error", "message": "Try again"}),
    ]

    for status in ("429", "503"):
        with pytest.raises(Retry):
            await send_email(ctx, KEY)
        delivery = await state_of(ctx)
        assert delivery.state is DeliveryState.GENERATED
        assert delivery.error is not None and delivery.error.startswith(f"Resend {status}")
    assert await send_email(ctx, KEY) == "sent"

    assert [r.headers["Idempotency-Key"] for r in resend.received()] == [KEY] * 3
    assert (await state_of(ctx)).attempts == 3


async def test_422_ends_failed_with_the_providers_message(
    store: dict[str, Any], resend: ResendStandIn
) -> None:
    ctx = with_settings(store, resend_settings(resend))
    await notify_by_email(ctx, await a_digest(ctx))
    message = "Invalid `to` field. The email address needs to follow the format."
    resend.script.append(Answer(422, {"name": "validation_error", "message": message}))

    assert await send_email(ctx, KEY) == "failed"
    assert await send_email(ctx, KEY) == "nothing to send"

    delivery = await state_of(ctx)
    assert delivery.state is DeliveryState.FAILED
    assert delivery.error == f"Resend 422: validation_error: {message}"
    assert len(resend.received()) == 1


async def test_a_timeout_after_sending_is_ambiguous_then_retried_with_the_same_key(
    store: dict[str, Any], resend: ResendStandIn
) -> None:
    ctx = with_settings(store, resend_settings(resend))
    await notify_by_email(ctx, await a_digest(ctx))
    resend.script.append(Answer(hang=True))

    with pytest.raises(Retry):
        await send_email(ctx, KEY)
    delivery = await state_of(ctx)
    assert delivery.state is DeliveryState.AMBIGUOUS
    assert delivery.error is not None and "no answer from Resend after sending" in delivery.error

    assert await send_email(ctx, KEY) == "sent"
    assert [r.headers["Idempotency-Key"] for r in resend.received()] == [KEY, KEY]


async def test_an_ambiguous_send_past_the_window_is_left_for_an_operator(
    store: dict[str, Any], resend: ResendStandIn
) -> None:
    ctx = with_settings(store, resend_settings(resend))
    await notify_by_email(ctx, await a_digest(ctx))
    resend.script.append(Answer(hang=True))
    with pytest.raises(Retry):
        await send_email(ctx, KEY)
    began = stamp(utcnow() - timedelta(hours=23, minutes=1))
    await ctx["backend"].update(
        keys.EMAIL_DELIVERIES, {"delivery_key": KEY}, {"first_send_at": began}
    )

    assert await send_email(ctx, KEY) == "nothing to send"
    assert await reconcile_deliveries(ctx) == 0

    assert (await state_of(ctx)).state is DeliveryState.AMBIGUOUS
    assert len(resend.received()) == 1


# Operators: retry_failed


async def test_retry_failed_sends_a_failed_delivery_again_and_never_a_sent_one(
    store: dict[str, Any], resend: ResendStandIn
) -> None:
    ctx = with_settings(store, resend_settings(resend))
    await notify_by_email(ctx, await a_digest(ctx))
    resend.script.append(Answer(422, {"name": "validation_error", "message": "Bad from"}))
    assert await send_email(ctx, KEY) == "failed"
    task_id = daily_task_id(ADA, DAY)

    await open_delivery(ctx, ADA, "ada@example.com", DAY, task_id)  # a plain run again
    assert (await state_of(ctx)).state is DeliveryState.FAILED
    await open_delivery(ctx, ADA, "ada@example.com", DAY, task_id, retry_failed=True)
    assert (await state_of(ctx)).state is DeliveryState.GENERATED
    assert await send_email(ctx, KEY) == "sent"
    await open_delivery(ctx, ADA, "ada@example.com", DAY, task_id, retry_failed=True)

    assert (await state_of(ctx)).state is DeliveryState.SENT
    assert await send_email(ctx, KEY) == "nothing to send"
    assert len(resend.received()) == 2


async def test_retry_failed_makes_a_failed_digest_again_before_sending(
    store: dict[str, Any], resend: ResendStandIn
) -> None:
    ctx = with_settings(store, resend_settings(resend))
    task = await a_digest(ctx, TaskStatus.FAILED)
    await notify_by_email(ctx, task)

    await open_delivery(ctx, ADA, "ada@example.com", DAY, task.task_id, retry_failed=True)

    assert (await state_of(ctx)).state is DeliveryState.PENDING
    reopened = await ctx["tasks"].get(task.task_id)
    assert reopened is not None and reopened.status is TaskStatus.PENDING
    job_status = await queue.job_status(ctx["redis"], DIGEST.job_id(task.task_id))
    assert job_status is JobStatus.queued


# SMTP: no idempotency key on the server


async def test_smtp_sends_the_html_digest_to_the_subscriber(
    store: dict[str, Any], inbox: Inbox
) -> None:
    ctx = with_settings(store, smtp_settings(inbox))
    await notify_by_email(ctx, await a_digest(ctx))

    assert await send_email(ctx, KEY) == "sent"

    [received] = inbox.received()
    assert received.rcpt_tos == ["ada@example.com"]
    assert received.message["To"] == "ada@example.com"
    assert received.html.strip() == HTML


async def test_a_send_cut_by_a_crash_on_smtp_is_ambiguous_and_never_repeated(
    store: dict[str, Any], inbox: Inbox
) -> None:
    ctx = with_settings(store, smtp_settings(inbox))
    await notify_by_email(ctx, await a_digest(ctx))
    deliveries = DeliveryRepository(ctx["backend"])
    # What a worker SIGKILLed mid-send leaves: `sending`, and nobody to finish it.
    assert await deliveries.begin_send(await state_of(ctx)) is not None

    assert await send_email(ctx, KEY) == "nothing to send"
    assert await reconcile_deliveries(ctx) == 0

    delivery = await state_of(ctx)
    assert delivery.state is DeliveryState.AMBIGUOUS
    assert delivery.error == "the worker stopped during the send"
    assert inbox.received() == []


def smtp_settings(inbox: Inbox, **fields: Any) -> Settings:
    values: dict[str, Any] = {
        "email_provider": "smtp",
        "smtp_host": "127.0.0.1",
        "smtp_port": inbox.port,
        "smtp_starttls": False,
        "email_from": SENDER,
        "email_timeout_seconds": 5,
    }
    return Settings(**{**values, **fields})


# The reconciler


async def test_the_reconciler_queues_ready_sends_and_finishes_what_a_crash_left(
    store: dict[str, Any], resend: ResendStandIn
) -> None:
    ctx = with_settings(store, resend_settings(resend, reconcile_grace_seconds=0))
    task = await a_digest(ctx)  # the digest completed, but its worker died before the hook
    deliveries = DeliveryRepository(ctx["backend"])
    await deliveries.create(welcome_delivery(ADA, "ada@example.com"))

    assert await reconcile_deliveries(ctx) == 1  # the welcome; the digest may still be running
    an_hour_ago = stamp(utcnow() - timedelta(hours=1))  # longer than a digest attempt may take
    await ctx["backend"].update(
        keys.EMAIL_DELIVERIES, {"delivery_key": KEY}, {"updated_at": an_hour_ago}
    )
    assert await reconcile_deliveries(ctx) == 1  # the digest's delivery moved on, and queued

    delivery = await state_of(ctx)
    assert (delivery.state, delivery.task_id) == (DeliveryState.GENERATED, task.task_id)
    for key in (KEY, f"welcome:{ADA}"):
        job_status = await queue.job_status(ctx["redis"], keys.email_job_id(key))
        assert job_status is JobStatus.queued
    assert await reconcile_deliveries(ctx) == 0  # live jobs are left alone


# Settings


def test_the_worker_refuses_a_daily_run_that_can_email_nobody() -> None:
    with pytest.raises(ValidationError, match="ORCHESTRATION_ENABLED=true needs EMAIL_PROVIDER"):
        WorkerProcessSettings(orchestration_enabled=True)
    with pytest.raises(SystemExit, match="^paperboy: invalid configuration: .*EMAIL_PROVIDER"):
        load_settings(WorkerProcessSettings, orchestration_enabled=True)
    assert Settings(orchestration_enabled=True).orchestration_enabled  # the API starts anyway


def test_the_worker_command_refuses_with_one_line(tmp_path: Path, redis_url: str) -> None:
    env = base_env(redis_url, tmp_path / "paperboy.db", orchestration_enabled="true")
    argv = [str(BIN / "python"), "-m", "paperboy_worker"]
    ended = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)

    assert ended.returncode == 1
    assert ended.stderr.strip().splitlines() == [
        "paperboy: invalid configuration: settings: Value error, ORCHESTRATION_ENABLED=true "
        "needs EMAIL_PROVIDER=resend or smtp: the daily digests would reach no subscriber"
    ]


def test_the_supabase_key_may_be_named_as_the_old_service_named_it() -> None:
    settings = Settings(supabase_service_role_key="service-role")  # type: ignore[call-arg]
    assert settings.supabase_key is not None
    assert settings.supabase_key.get_secret_value() == "service-role"
