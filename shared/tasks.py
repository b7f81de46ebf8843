"""Task transitions over the state store, the same for every kind of task.

Every write that changes a task's status is conditional on the status and attempt it expects, so
writes only move forward and an attempt that lost its claim (a zombie) can never overwrite a newer
attempt or a terminal status.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic

from shared import keys
from shared.errors import FencedError, StoreError, TaskCancelledError
from shared.lifecycle import DIGEST, T, TaskKind
from shared.models import (
    ACTIVE,
    CallbackStatus,
    DigestTask,
    TaskRecord,
    TaskStatus,
    Usage,
    stamp,
    utcnow,
)
from shared.store import Backend, Cond, Query, Row

log = logging.getLogger("paperboy.tasks")

ACTIVE_VALUES = tuple(s.value for s in ACTIVE)
TIMESTAMPS = ("created_at", "updated_at", "started_at", "finished_at")


def request_hash(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _row(task: TaskRecord) -> Row:
    row = task.model_dump(mode="json")
    for name in TIMESTAMPS:
        value = getattr(task, name)
        row[name] = stamp(value) if value else None
    return row


def _ending(task: TaskRecord, status: TaskStatus) -> Row:
    """What every terminal write sets: the notice of the outcome gets its own delivery id."""
    callback = CallbackStatus.PENDING if task.callback_url else CallbackStatus.NONE
    return {
        "status": status.value,
        "running": False,
        "finished_at": stamp(),
        "callback_status": callback.value,
        "delivery_id": str(uuid.uuid4()),
    }


@dataclass(frozen=True)
class IdempotentResult:
    task_id: str
    created: bool
    conflict: bool = False


class Repository(Generic[T]):
    """The tasks of one kind in the store, and the only code that changes them."""

    def __init__(self, backend: Backend, kind: TaskKind[T]) -> None:
        self.backend = backend
        self.kind = kind
        self.table = kind.table

    def _model(self, row: Row) -> T:
        return self.kind.model.model_validate(row)

    async def create(self, task: T) -> bool:
        return await self.backend.insert(self.table, _row(task))

    async def get(self, task_id: str) -> T | None:
        row = await self.backend.get(self.table, {"task_id": task_id})
        return self._model(row) if row else None

    async def delete(self, task_id: str) -> None:
        await self.backend.delete(self.table, {"task_id": task_id})

    async def take_back(self, task_id: str) -> None:
        """Delete a task its request did not get accepted; a store failure is logged, not raised,
        because the caller is already answering with the error that made it take the task back."""
        try:
            await self.delete(task_id)
        except StoreError as exc:
            log.error(
                "could not take back a %s that was not accepted; it may still run: %s",
                self.kind.name,
                exc.message,
                extra={"task_id": task_id},
            )

    # Attempts

    async def claim(
        self, task_id: str, worker_id: str, *, max_failures: int, max_interruptions: int
    ) -> T | None:
        """Start a new attempt; None when the task is already terminal (nothing to do).

        An attempt that was still marked running when the next one claims the task was
        interrupted (crash, deploy, reap); that is counted apart from the task's own failures.
        """
        task = await self.get(task_id)
        if task is None or task.status.terminal:
            return None
        interruptions = task.interruptions + (1 if task.running else 0)
        now = utcnow()
        changes: Row = {
            "status": TaskStatus.PROCESSING.value,
            "attempt": task.attempt + 1,
            "running": True,
            "interruptions": interruptions,
            "max_attempts": max_failures,
            "worker_id": worker_id,
            "started_at": stamp(task.started_at or now),
            "updated_at": stamp(now),
        }
        if task.running:
            changes["message"] = (
                f"Resuming after an interruption (attempt {task.attempt + 1}, "
                f"{interruptions} interruption{'s' if interruptions != 1 else ''} so far)"
            )
        row = await self.backend.update(
            self.table,
            {"task_id": task_id},
            changes,
            [Cond("attempt", "eq", task.attempt), Cond("status", "in", ACTIVE_VALUES)],
        )
        if row is None:
            raise FencedError(f"task {task_id} was claimed by another attempt")
        return self._model(row)

    async def _write(self, task: T, changes: Row) -> T:
        """A write by the attempt that owns `task`; raises when it no longer does."""
        changes = {**changes, "updated_at": stamp()}
        row = await self.backend.update(
            self.table,
            {"task_id": task.task_id},
            changes,
            [
                Cond("attempt", "eq", task.attempt),
                Cond("status", "eq", TaskStatus.PROCESSING.value),
                Cond("cancel_requested", "eq", False),
            ],
        )
        if row is not None:
            return self._model(row)
        current = await self.get(task.task_id)
        if current is not None and current.cancel_requested and current.attempt == task.attempt:
            raise TaskCancelledError("The task was cancelled by an operator")
        raise FencedError(f"attempt {task.attempt} of task {task.task_id} lost its claim")

    async def progress(self, task: T, message: str, **changes: Any) -> T:
        """Where the attempt is; also where it stops when cancelled or superseded."""
        return await self._write(task, {**changes, "message": message})

    async def retry_later(
        self, task: T, error: str, error_code: str, delay: float, *, failure: bool = True
    ) -> T:
        """Record an attempt that will be retried after `delay` seconds; `failure=False` for a
        wait that is nobody's fault (the provider's rate limit), which costs no attempt."""
        when = (utcnow() + timedelta(seconds=delay)).strftime("%H:%M:%S UTC")
        message = (
            f"Attempt {task.attempt} failed ({error_code}: {error[:200]}); "
            f"attempt {task.attempt + 1} at {when}"
        )
        return await self._write(
            task,
            {
                "failures": task.failures + (1 if failure else 0),
                "running": False,
                "message": message,
                "error": error,
                "error_code": error_code,
            },
        )

    async def release(self, task: T) -> None:
        """Give the task back on shutdown; the next claim counts the interruption."""
        await self._write(task, {"message": "Interrupted by a worker shutdown; waiting to resume"})

    async def complete(self, task: T, result: Row) -> T:
        """`result`: the columns the kind's work produced."""
        changes = {**result, "message": self.kind.done_message, "error": None, "error_code": None}
        return await self._write(task, {**changes, **_ending(task, TaskStatus.COMPLETED)})

    async def fail(self, task: T, error: str, error_code: str, *, own_failure: bool = True) -> T:
        changes: Row = {
            "message": f"Failed: {error[:500]}",
            "error": error,
            "error_code": error_code,
        }
        if own_failure:
            changes["failures"] = task.failures + 1
        return await self._write(task, {**changes, **_ending(task, TaskStatus.FAILED)})

    async def end_unowned(
        self, task_id: str, status: TaskStatus, error: str, error_code: str
    ) -> T | None:
        """Make an active task terminal from outside any attempt (reconciler, operator).

        Conditional on the attempt seen, so it loses to an attempt that moves meanwhile.
        """
        task = await self.get(task_id)
        if task is None or task.status.terminal:
            return None
        ending = _ending(task, status)
        row = await self.backend.update(
            self.table,
            {"task_id": task_id},
            {
                **ending,
                "message": f"{status.value.capitalize()}: {error[:500]}",
                "error": error,
                "error_code": error_code,
                "updated_at": ending["finished_at"],
            },
            [Cond("attempt", "eq", task.attempt), Cond("status", "in", ACTIVE_VALUES)],
        )
        return self._model(row) if row else None

    # Callbacks

    async def record_callback(
        self, task_id: str, status: CallbackStatus, attempts: int, error: str | None
    ) -> None:
        await self.backend.update(
            self.table,
            {"task_id": task_id},
            {
                "callback_status": status.value,
                "callback_attempts": attempts,
                "callback_error": error,
            },
            [Cond("callback_status", "eq", CallbackStatus.PENDING.value)],
        )

    # Operators

    async def reopen(self, task_id: str) -> T | None:
        """A failed or cancelled task becomes pending again: a new attempt, the same task id.

        Not while the callback of its outcome is still being delivered: the receiver hears of
        every terminal status, in order.
        """
        task = await self.get(task_id)
        if task is None or task.status not in {TaskStatus.FAILED, TaskStatus.CANCELLED}:
            return None
        if task.callback_status is CallbackStatus.PENDING:
            return None
        row = await self.backend.update(
            self.table,
            {"task_id": task_id},
            {
                **self.kind.reopened,
                "status": TaskStatus.PENDING.value,
                "message": f"Retry requested by an operator after {task.status.value}",
                "running": False,
                "failures": 0,
                "interruptions": 0,
                "cancel_requested": False,
                "error": None,
                "error_code": None,
                "result": None,
                "finished_at": None,
                "callback_status": CallbackStatus.NONE.value,
                "callback_attempts": 0,
                "callback_error": None,
                "delivery_id": None,
                "updated_at": stamp(),
            },
            [
                Cond("attempt", "eq", task.attempt),
                Cond("status", "eq", task.status.value),
                Cond("callback_status", "neq", CallbackStatus.PENDING.value),
            ],
        )
        return self._model(row) if row else None

    async def cancel(self, task_id: str) -> T | None:
        """Cancel an active task: at once when no attempt runs it, else at the attempt's next
        write. None when the task is unknown or already terminal."""
        for _ in range(3):
            task = await self.get(task_id)
            if task is None or task.status.terminal:
                return None
            if not task.running:
                ended = await self.end_unowned(
                    task_id, TaskStatus.CANCELLED, "Cancelled by an operator", "cancelled"
                )
                if ended is not None:
                    return ended
                continue
            row = await self.backend.update(
                self.table,
                {"task_id": task_id},
                {"cancel_requested": True, "message": "Cancelling at the next stage boundary"},
                [Cond("attempt", "eq", task.attempt), Cond("running", "eq", True)],
            )
            if row is not None:
                return self._model(row)
        raise FencedError(f"task {task_id} kept changing; try again")

    # Listings

    async def page(self, status: TaskStatus | None, before: str | None, limit: int) -> list[T]:
        """Newest first; `before` is the `created_at` of the last task of the previous page."""
        where = [Cond("status", "eq", status.value)] if status else []
        if before:
            where.append(Cond("created_at", "lt", before))
        rows = await self.backend.select(
            self.table, Query(where, order_by="created_at", descending=True, limit=limit)
        )
        return [self._model(row) for row in rows]

    async def active(self, limit: int = 1000) -> list[T]:
        """What the reconciler makes sure is queued."""
        return await self._oldest([Cond("status", "in", ACTIVE_VALUES)], limit)

    async def undelivered(self, limit: int = 1000) -> list[T]:
        """What the reconciler makes sure is being notified."""
        return await self._oldest(
            [Cond("callback_status", "eq", CallbackStatus.PENDING.value)], limit
        )

    async def _oldest(self, where: list[Cond], limit: int) -> list[T]:
        rows = await self.backend.select(
            self.table, Query(where, order_by="created_at", limit=limit)
        )
        return [self._model(row) for row in rows]


class TaskRepository(Repository[DigestTask]):
    """The digest tasks: the common lifecycle, their usage, and the API's idempotency keys."""

    def __init__(self, backend: Backend) -> None:
        super().__init__(backend, DIGEST)

    async def add_usage(self, task: DigestTask, usage: Usage) -> DigestTask:
        return await self._write(task, {"usage": (task.usage + usage).model_dump()})

    async def remember_key(
        self, key: str, body_hash: str, task_id: str, ttl: timedelta
    ) -> IdempotentResult:
        """Bind `key` to `task_id` unless a live binding exists; say which task the key names."""
        now = utcnow()
        encoded = {
            "key": key,
            "request_hash": body_hash,
            "task_id": task_id,
            "created_at": stamp(now),
        }
        if await self.backend.insert(keys.IDEMPOTENCY_KEYS, encoded):
            return IdempotentResult(task_id, created=True)
        existing = await self.backend.get(keys.IDEMPOTENCY_KEYS, {"key": key})
        if existing is None:
            return await self.remember_key(key, body_hash, task_id, ttl)
        if datetime.fromisoformat(existing["created_at"]) < now - ttl:
            replaced = await self.backend.update(
                keys.IDEMPOTENCY_KEYS,
                {"key": key},
                encoded,
                [Cond("created_at", "eq", existing["created_at"])],
            )
            if replaced is not None:
                return IdempotentResult(task_id, created=True)
            return await self.remember_key(key, body_hash, task_id, ttl)
        same = existing["request_hash"] == body_hash
        return IdempotentResult(existing["task_id"], created=False, conflict=not same)
