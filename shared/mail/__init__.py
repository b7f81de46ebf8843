"""Email: the messages Paperboy sends, the providers that carry them, one outcome per send."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import httpx

from shared.mail.message import (
    IDEMPOTENCY_WINDOW_SECONDS,
    Ambiguous,
    Email,
    Failed,
    Retryable,
    SendOutcome,
    Sent,
    digest_email,
    welcome_email,
)
from shared.mail.resend import ResendMailer
from shared.mail.smtp import SmtpMailer
from shared.settings import Settings

__all__ = [
    "IDEMPOTENCY_WINDOW_SECONDS",
    "Ambiguous",
    "Email",
    "Failed",
    "Mailer",
    "ResendMailer",
    "Retryable",
    "SendOutcome",
    "Senders",
    "Sent",
    "SmtpMailer",
    "digest_email",
    "open_mailer",
    "senders",
    "welcome_email",
]


class Mailer(Protocol):
    async def send(self, email: Email) -> SendOutcome:
        """Hand `email` to the provider once; never raises for what the provider answers."""
        ...


@dataclass(frozen=True)
class Senders:
    """The `From` of each kind of mail."""

    digest: str
    welcome: str


def open_mailer(settings: Settings, http: httpx.AsyncClient) -> Mailer | None:
    """The configured provider, on the process's httpx client; None when email is off."""
    if settings.email_provider == "resend" and settings.resend_api_key is not None:
        return ResendMailer(
            http,
            settings.resend_base_url,
            settings.resend_api_key.get_secret_value(),
            timeout=settings.email_timeout_seconds,
        )
    if settings.email_provider == "smtp" and settings.smtp_host is not None:
        password = settings.smtp_password
        return SmtpMailer(
            settings.smtp_host,
            settings.smtp_port,
            username=settings.smtp_username,
            password=password.get_secret_value() if password is not None else None,
            starttls=settings.smtp_starttls,
            timeout=settings.email_timeout_seconds,
        )
    return None


def senders(settings: Settings) -> Senders | None:
    """Who the digest and the welcome come from, for the configured provider."""
    by_provider = {"resend": settings.resend_from_address, "smtp": settings.email_from}
    digest = by_provider.get(settings.email_provider)
    if digest is None:
        return None
    return Senders(digest=digest, welcome=settings.welcome_from_address or digest)
