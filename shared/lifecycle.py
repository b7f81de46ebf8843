"""The kinds of task, each declared once: its table, row model, job, retry policy and notice.

Every kind shares one lifecycle (pending -> processing -> completed | failed | cancelled), one
repository that makes every state change (shared/tasks.py) and one worker-side runner that
records every attempt's outcome (paperboy_worker/lifecycle.py). Adding a kind is a declaration
here plus its work function in the worker (see `FETCH` and paperboy_worker/fetch_job.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

from shared import keys
from shared.fetches import FetchTask
from shared.models import DigestTask, Stage, TaskRecord
from shared.retry import backoff_delay
from shared.settings import Settings

T = TypeVar("T", bound=TaskRecord)


class Notification(StrEnum):
    """How the world hears that a task ended. The worker maps each to its notifier
    (paperboy_worker/lifecycle.py `NOTIFIERS`)."""

    CALLBACK = "callback"  # a signed POST to the task's `callback_url`, its own retried job
    EMAIL = "email"  # a daily digest mailed to its subscriber: its delivery record's send job


@dataclass(frozen=True)
class RetryPolicy:
    """When an attempt that failed is tried again, and when the task gives up."""

    schedule: tuple[float, ...]  # backoff steps, seconds (shared/retry.py)
    max_failures: int  # the task's own failures before it fails for good
    max_interruptions: int  # crashes, deploys and reaps before it fails for good
    timeout: float  # one attempt's budget, seconds

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        return backoff_delay(self.schedule, failures, retry_after)


@dataclass(frozen=True)
class TaskKind(Generic[T]):
    name: str  # also the `kind` argument of its callback job
    table: str
    model: type[T]
    job: str  # the arq function that runs an attempt
    job_prefix: str  # the job id is the prefix and the task id
    policy: Callable[[Settings], RetryPolicy]
    done_message: str
    notifications: tuple[Notification, ...] = (Notification.CALLBACK,)
    # The kind's own columns set back when an operator reopens a task.
    reopened: Mapping[str, Any] = field(default_factory=dict)
    # Whether its attempts feed the `paperboy_<name>_*` metrics (shared/metrics.py SPECS).
    measured: bool = False

    def job_id(self, task_id: str) -> str:
        """Enqueuing one task twice runs it once: its job id is fixed by its task id."""
        return self.job_prefix + task_id

    def callback_job_id(self, task_id: str) -> str:
        return "callback:" + self.job_id(task_id)


DIGEST = TaskKind(
    name="digest",
    table=keys.DIGEST_TASKS,
    model=DigestTask,
    job=keys.GENERATE_DIGEST,
    job_prefix="",
    policy=lambda s: RetryPolicy(
        s.retry_backoff_seconds,
        s.digest_max_tries,
        s.digest_max_interruptions,
        s.digest_task_timeout,
    ),
    done_message="Digest generated successfully",
    notifications=(Notification.CALLBACK, Notification.EMAIL),
    reopened={"stage": Stage.QUEUED.value, "progress": 0.0},
    measured=True,
)

FETCH = TaskKind(
    name="fetch",
    table=keys.FETCH_TASKS,
    model=FetchTask,
    job=keys.FETCH_SOURCES,
    job_prefix="fetch:",
    policy=lambda s: RetryPolicy(
        s.retry_backoff_seconds, s.fetch_max_tries, s.fetch_max_interruptions, s.task_timeout
    ),
    done_message="Sources fetched",
)

KINDS: dict[str, TaskKind[Any]] = {kind.name: kind for kind in (DIGEST, FETCH)}
