"""`POST /hooks/welcome`: the frontend's signup, as a Supabase database webhook, becomes one
welcome email per user.

Supabase gives a webhook 5 s, so the answer comes after one store write and one enqueue; the
send is the worker's `send_email` job, keyed `welcome:{user_id}`. A webhook retried for the same
user finds the delivery already there, and the job sends nothing twice.
"""

from __future__ import annotations

import logging
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from paperboy_api.body import read_json
from paperboy_api.errors import RETRY_AFTER, ApiError, field_errors
from paperboy_api.state import app_state
from shared import queue
from shared.deliveries import DeliveryRepository, welcome_delivery
from shared.mail import senders

log = logging.getLogger("paperboy.api")

# An address is one line with one `@` and no spaces: anything else would not survive a header.
# The user becomes the provider's idempotency key (`welcome:{user_id}`), an HTTP header: a uuid
# fits, and nothing that a header cannot carry does.
USER_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
EMAIL_PATTERN = r"^[^@\s<>,;]+@[^@\s<>,;]+$"


class WelcomeRecord(BaseModel):
    """The `profiles` row the webhook carries; only these fields matter."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    id: Annotated[StrictStr | None, Field(pattern=USER_ID_PATTERN)] = None
    user_id: Annotated[StrictStr | None, Field(pattern=USER_ID_PATTERN)] = None
    email: Annotated[StrictStr | None, Field(max_length=320, pattern=EMAIL_PATTERN)] = None
    name: Annotated[StrictStr | None, Field(max_length=200)] = None

    def recipient_id(self) -> str | None:
        """Whom the welcome is for, once: the user, or the row when the user is not given."""
        return self.user_id or self.id


class WelcomeHook(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Annotated[StrictStr | None, Field(max_length=32)] = None
    table: Annotated[StrictStr | None, Field(max_length=128)] = None
    record: WelcomeRecord | None = None


def _parse(body: object) -> WelcomeHook:
    try:
        return WelcomeHook.model_validate(body)
    except ValidationError as exc:
        raise ApiError(422, field_errors(exc)) from exc


async def welcome(request: Request) -> Response:
    state = app_state(request)
    hook = _parse(await read_json(request))
    if senders(state["settings"]) is None:
        raise ApiError(503, "No email provider is configured", RETRY_AFTER)
    record = hook.record
    if record is None or not record.email:
        return JSONResponse({"status": "skipped", "reason": "no email in record"}, 202)
    user_id = record.recipient_id()
    if not user_id:
        loc = ["body", "record", "user_id"]
        raise ApiError(422, [{"loc": loc, "msg": "Field required", "type": "missing"}])
    delivery = welcome_delivery(user_id, record.email)
    await DeliveryRepository(state["backend"]).create(delivery)
    try:
        await queue.enqueue_send(state["redis"], delivery.delivery_key)
    except RedisError as exc:
        # The record is kept: the reconciler queues a ready delivery that has no job.
        extra = {"delivery_key": delivery.delivery_key}
        log.warning("welcome not queued yet: %s", exc, extra=extra)
    return JSONResponse({"status": "accepted"}, 202)
