"""What Paperboy mails, and the ways one send can end."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

# Resend keeps an idempotency key for 24 hours; a send whose outcome is unknown is retried with
# the same key only inside this window, an hour short of it, and then left to an operator.
IDEMPOTENCY_WINDOW_SECONDS = 23 * 3600
# A provider's error text is recorded on the delivery; this keeps one answer from filling it.
MAX_REASON_CHARS = 500
# Resend accepts tag names and values of ASCII letters, digits, `_` and `-`, up to 256 long.
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_TAG_MAX_CHARS = 256

WELCOME_SUBJECT = "Welcome to Paperboy"


@dataclass(frozen=True)
class Email:
    """One message to one subscriber; `idempotency_key` makes a resend of it harmless."""

    to: str
    sender: str
    subject: str
    html: str
    idempotency_key: str
    text: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Sent:
    """The provider accepted the message."""

    message_id: str


@dataclass(frozen=True)
class Retryable:
    """The message was not accepted this time; another attempt may succeed."""

    reason: str
    retry_after: float | None = None


@dataclass(frozen=True)
class Failed:
    """The provider refused the message; another attempt would be refused too."""

    reason: str


@dataclass(frozen=True)
class Ambiguous:
    """The request may have reached the provider: only a retry with the same key is safe."""

    reason: str


SendOutcome = Sent | Retryable | Failed | Ambiguous


def bounded(reason: str) -> str:
    """A provider's message cut to a length a delivery record can hold."""
    reason = " ".join(reason.split())
    if len(reason) <= MAX_REASON_CHARS:
        return reason
    return reason[: MAX_REASON_CHARS - 1] + "…"


def digest_key(source_date: date, user_id: str) -> str:
    return f"paperboy:{source_date.isoformat()}:{user_id}"


def welcome_key(user_id: str) -> str:
    return f"welcome:{user_id}"


def digest_subject(name: str | None) -> str:
    # A name is one line of a header: newlines in a profile must not start another header.
    name = " ".join((name or "").split())
    return f"Paperboy | {name}'s Daily Digest" if name else "Paperboy | Your Daily Digest"


def tag_value(value: str) -> str:
    """`value` with every character Resend refuses in a tag replaced by `_`."""
    return _TAG_UNSAFE.sub("_", value)[:_TAG_MAX_CHARS]


def digest_email(
    *,
    to: str,
    sender: str,
    name: str | None,
    source_date: date,
    user_id: str,
    task_id: str,
    html: str,
    text: str | None = None,
) -> Email:
    """The daily digest for one subscriber, keyed by day and user as the old service did."""
    return Email(
        to=to,
        sender=sender,
        subject=digest_subject(name),
        html=html,
        text=text,
        idempotency_key=digest_key(source_date, user_id),
        tags={"task_id": tag_value(task_id)},
    )


def welcome_email(
    *, to: str, sender: str, user_id: str, html: str, text: str | None = None
) -> Email:
    """The signup welcome, sent once per user."""
    return Email(
        to=to,
        sender=sender,
        subject=WELCOME_SUBJECT,
        html=html,
        text=text,
        idempotency_key=welcome_key(user_id),
        tags={"type": "welcome"},
    )
