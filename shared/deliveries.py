"""Email deliveries: one record per daily digest email or welcome, and every change of its state.

A delivery moves `pending → generating → generated → sending → sent | failed | ambiguous`.
Every write is conditional on the state (and, for a send, the attempt) it expects, as the task
transitions in shared/tasks.py are, so two workers, a crashed attempt and an operator can never
move one backwards. `sent` is final: no write leaves it, so nothing is ever sent twice from here.

Welcomes have nothing to generate: they are created `generated`, ready to send.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel

from shared import keys
from shared.mail.message import IDEMPOTENCY_WINDOW_SECONDS, bounded, digest_key, welcome_key
from shared.models import stamp, utcnow
from shared.store import Backend, Cond, Query, Row


class DeliveryState(StrEnum):
    PENDING = "pending"
    GENERATING = "generating"
    GENERATED = "generated"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    AMBIGUOUS = "ambiguous"


class DeliveryKind(StrEnum):
    DIGEST = "digest"
    WELCOME = "welcome"


# States a send may start from: ready, or unknown and retried with the same key.
SENDABLE = (DeliveryState.GENERATED, DeliveryState.AMBIGUOUS)
# States the digest has not reached yet.
BEFORE_DIGEST = (DeliveryState.PENDING, DeliveryState.GENERATING)
# Every state but the two an operator decides on (failed) or that is done (sent).
UNFINISHED = (*BEFORE_DIGEST, DeliveryState.GENERATED, DeliveryState.SENDING)


class Delivery(BaseModel):
    """One row of `paperboy_email_deliveries`."""

    delivery_key: str
    kind: DeliveryKind
    user_id: str
    email: str
    source_date: str | None = None
    task_id: str | None = None
    state: DeliveryState = DeliveryState.PENDING
    attempts: int = 0
    provider_message_id: str | None = None
    error: str | None = None
    first_send_at: str | None = None
    sent_at: str | None = None
    created_at: str
    updated_at: str

    def window_open(self, now: datetime | None = None) -> bool:
        """Whether a retry with the same key is still inside the provider's idempotency window,
        counted from when the first send began."""
        if self.first_send_at is None:
            return True
        began = datetime.fromisoformat(self.first_send_at)
        return (now or utcnow()) - began < timedelta(seconds=IDEMPOTENCY_WINDOW_SECONDS)


def digest_delivery(user_id: str, email: str, source_date: date, task_id: str) -> Delivery:
    now = stamp()
    return Delivery(
        delivery_key=digest_key(source_date, user_id),
        kind=DeliveryKind.DIGEST,
        user_id=user_id,
        email=email,
        source_date=source_date.isoformat(),
        task_id=task_id,
        created_at=now,
        updated_at=now,
    )


def welcome_delivery(user_id: str, email: str) -> Delivery:
    now = stamp()
    return Delivery(
        delivery_key=welcome_key(user_id),
        kind=DeliveryKind.WELCOME,
        user_id=user_id,
        email=email,
        state=DeliveryState.GENERATED,
        created_at=now,
        updated_at=now,
    )


def _states(states: Sequence[DeliveryState]) -> tuple[str, ...]:
    return tuple(s.value for s in states)


class DeliveryRepository:
    """The delivery records in the store, and the only code that changes them."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def create(self, delivery: Delivery) -> bool:
        """Insert; False (and no change) when the key has a record already."""
        return await self.backend.insert(keys.EMAIL_DELIVERIES, delivery.model_dump(mode="json"))

    async def get(self, delivery_key: str) -> Delivery | None:
        row = await self.backend.get(keys.EMAIL_DELIVERIES, {"delivery_key": delivery_key})
        return Delivery.model_validate(row) if row else None

    async def _move(
        self, key: str, changes: Row, states: Sequence[DeliveryState], *extra: Cond
    ) -> Delivery | None:
        """Apply `changes` only from one of `states`; the new record, or None when it was not in
        one of them (another writer got there first)."""
        row = await self.backend.update(
            keys.EMAIL_DELIVERIES,
            {"delivery_key": key},
            {**changes, "updated_at": stamp()},
            [Cond("state", "in", _states(states)), *extra],
        )
        return Delivery.model_validate(row) if row else None

    # The digest

    async def generating(self, key: str, task_id: str) -> Delivery | None:
        changes = {"state": DeliveryState.GENERATING.value, "task_id": task_id}
        return await self._move(key, changes, [DeliveryState.PENDING])

    async def generated(self, key: str, task_id: str) -> Delivery | None:
        changes = {"state": DeliveryState.GENERATED.value, "task_id": task_id, "error": None}
        return await self._move(key, changes, BEFORE_DIGEST)

    async def digest_failed(self, key: str, error: str) -> Delivery | None:
        changes = {"state": DeliveryState.FAILED.value, "error": bounded(f"digest failed: {error}")}
        return await self._move(key, changes, BEFORE_DIGEST)

    # The send: each attempt is fenced by the attempt count it started with

    async def begin_send(self, delivery: Delivery) -> Delivery | None:
        """`sending`, one more attempt, and the start of the idempotency window on the first."""
        now = stamp()
        changes: Row = {
            "state": DeliveryState.SENDING.value,
            "attempts": delivery.attempts + 1,
            "first_send_at": delivery.first_send_at or now,
        }
        fence = Cond("attempts", "eq", delivery.attempts)
        return await self._move(delivery.delivery_key, changes, [delivery.state], fence)

    async def sent(self, delivery: Delivery, message_id: str) -> Delivery | None:
        # From `ambiguous` too: a reconciler may have judged a slow attempt dead, and the
        # provider's definite answer is better knowledge than that guess.
        changes = {
            "state": DeliveryState.SENT.value,
            "provider_message_id": message_id,
            "sent_at": stamp(),
            "error": None,
        }
        states = [DeliveryState.SENDING, DeliveryState.AMBIGUOUS]
        return await self._move(delivery.delivery_key, changes, states, self._fence(delivery))

    async def cannot_send(self, delivery: Delivery, reason: str) -> Delivery | None:
        """Failed before any send: there is nothing a provider could be given."""
        changes = {"state": DeliveryState.FAILED.value, "error": bounded(reason)}
        fence = self._fence(delivery)
        return await self._move(delivery.delivery_key, changes, [delivery.state], fence)

    async def not_sent(self, delivery: Delivery, reason: str) -> Delivery | None:
        """The provider did not take it this time; it stays ready for the next attempt."""
        return await self._end_attempt(delivery, DeliveryState.GENERATED, reason)

    async def failed(self, delivery: Delivery, reason: str) -> Delivery | None:
        return await self._end_attempt(delivery, DeliveryState.FAILED, reason)

    async def ambiguous(self, delivery: Delivery, reason: str) -> Delivery | None:
        return await self._end_attempt(delivery, DeliveryState.AMBIGUOUS, reason)

    async def _end_attempt(
        self, delivery: Delivery, state: DeliveryState, reason: str
    ) -> Delivery | None:
        changes = {"state": state.value, "error": bounded(reason)}
        states = [DeliveryState.SENDING]
        return await self._move(delivery.delivery_key, changes, states, self._fence(delivery))

    @staticmethod
    def _fence(delivery: Delivery) -> Cond:
        return Cond("attempts", "eq", delivery.attempts)

    # Operators

    async def reopen(self, delivery: Delivery, state: DeliveryState) -> Delivery | None:
        """A failed delivery made ready again (`generated`) or sent back to its digest
        (`pending`); never a sent one."""
        changes = {"state": state.value, "error": None}
        return await self._move(delivery.delivery_key, changes, [DeliveryState.FAILED])

    # Listings

    async def for_date(self, source_date: date) -> list[Delivery]:
        rows = await self.backend.select(
            keys.EMAIL_DELIVERIES,
            Query([Cond("source_date", "eq", source_date.isoformat())], order_by="delivery_key"),
        )
        return [Delivery.model_validate(row) for row in rows]

    async def in_states(
        self, states: Sequence[DeliveryState], *where: Cond, limit: int = 1000
    ) -> list[Delivery]:
        """Oldest change first; `where` narrows it (say, to changes before a cutoff)."""
        rows = await self.backend.select(
            keys.EMAIL_DELIVERIES,
            Query(
                [Cond("state", "in", _states(states)), *where], order_by="updated_at", limit=limit
            ),
        )
        return [Delivery.model_validate(row) for row in rows]
