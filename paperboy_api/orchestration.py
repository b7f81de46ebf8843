"""The daily run by hand, its counts, and the profiles it writes for."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import asdict
from datetime import date, timedelta

from pydantic import (
    BaseModel,
    ConfigDict,
    StrictBool,
    StrictStr,
    ValidationError,
    field_validator,
)
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from paperboy_api.body import read_json
from paperboy_api.errors import RETRY_AFTER, ApiError, field_errors
from paperboy_api.state import app_state
from shared import keys, queue
from shared.deliveries import Delivery, DeliveryRepository, DeliveryState
from shared.mail import senders
from shared.models import TaskStatus, parse_day, utcnow
from shared.profiles import NO_ADDRESS, Profile, ProfileRepository, Skipped, parse_user_id
from shared.store import Cond


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    source_date: StrictStr | None = None
    retry_failed: StrictBool = False

    @field_validator("source_date")
    @classmethod
    def _real_date(cls, value: str | None) -> str | None:
        if value is not None:
            parse_day(value)
        return value

    def day(self) -> date:
        return parse_day(self.source_date) if self.source_date else utcnow().date() - timedelta(1)


async def run_daily(request: Request) -> Response:
    headers = request.headers
    has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
    body = await read_json(request) if has_body else {}
    try:
        run = RunRequest.model_validate(body)
    except ValidationError as exc:
        raise ApiError(422, field_errors(exc)) from exc
    day = run.day()
    try:
        await queue.enqueue_daily_run(
            app_state(request)["redis"], day, uuid.uuid4().hex, retry_failed=run.retry_failed
        )
    except RedisError as exc:
        raise ApiError(503, "Cannot queue the run right now", RETRY_AFTER) from exc
    return JSONResponse(
        {"source_date": day.isoformat(), "retry_failed": run.retry_failed, "status": "accepted"},
        status_code=202,
    )


async def daily_status(request: Request) -> Response:
    try:
        day = parse_day(request.path_params["source_date"])
    except ValueError as exc:
        raise ApiError(
            422, [{"loc": ["path", "source_date"], "msg": str(exc), "type": "value_error"}]
        ) from exc
    state = app_state(request)
    backend = state["backend"]
    base = [Cond("source_date", "eq", day.isoformat()), Cond("user_id", "is_null", False)]
    counts = {
        status.value: await backend.count(
            keys.DIGEST_TASKS, [*base, Cond("status", "eq", status.value)]
        )
        for status in TaskStatus
    }
    subscribers = await ProfileRepository(backend).eligible()
    skipped = [asdict(skip) for skip in subscribers.skipped]
    if senders(state["settings"]) is not None:
        unreachable = (p for p in subscribers.profiles if not p.email)
        skipped += [asdict(Skipped(p.user_id, NO_ADDRESS)) for p in unreachable]
    deliveries = await DeliveryRepository(backend).for_date(day)
    return JSONResponse(
        {
            "source_date": day.isoformat(),
            "profiles": len(subscribers.profiles),
            "skipped_profiles": skipped,
            "digests": sum(counts.values()),
            "by_status": counts,
            "totals": _totals(
                len(subscribers.profiles) + len(subscribers.skipped), len(skipped), deliveries
            ),
            "deliveries": [_view(d) for d in deliveries],
        }
    )


def _totals(eligible: int, skipped: int, deliveries: list[Delivery]) -> dict[str, int]:
    """Eligible counts every subscriber row the run reads, malformed ones too; skipped, the ones
    no email can come of."""
    states = Counter(d.state for d in deliveries)
    return {
        "eligible": eligible,
        "sent": states[DeliveryState.SENT],
        "failed": states[DeliveryState.FAILED],
        "skipped": skipped,
        "ambiguous": states[DeliveryState.AMBIGUOUS],
    }


def _view(delivery: Delivery) -> dict[str, object]:
    return delivery.model_dump(
        mode="json",
        include={
            "delivery_key",
            "user_id",
            "email",
            "task_id",
            "state",
            "attempts",
            "provider_message_id",
            "error",
            "first_send_at",
            "sent_at",
        },
    )


async def upsert_profile(request: Request) -> Response:
    try:
        profile = Profile.model_validate(await read_json(request))
    except ValidationError as exc:
        raise ApiError(422, field_errors(exc)) from exc
    await ProfileRepository(app_state(request)["backend"]).upsert(profile)
    return JSONResponse(profile.model_dump(mode="json"), status_code=200)


async def list_profiles(request: Request) -> Response:
    found = await ProfileRepository(app_state(request)["backend"]).all()
    return JSONResponse(
        {
            "items": [p.model_dump(mode="json") for p in found.profiles],
            "skipped": [asdict(skip) for skip in found.skipped],
        }
    )


async def remove_profile(request: Request) -> Response:
    try:
        user_id = parse_user_id(request.path_params["user_id"])
    except ValueError:
        raise ApiError(404, "Profile not found") from None
    if not await ProfileRepository(app_state(request)["backend"]).remove(user_id):
        raise ApiError(404, "Profile not found")
    return Response(status_code=204)
