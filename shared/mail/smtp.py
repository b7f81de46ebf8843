"""Sending through an SMTP server, for self-hosters and the local sink of `make run`."""

from __future__ import annotations

import contextlib
import hashlib
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate, parseaddr

import aiosmtplib

from shared.mail.message import Ambiguous, Email, Failed, Retryable, SendOutcome, Sent, bounded

# 7-bit bodies (quoted-printable or base64) pass servers that do not offer 8BITMIME.
_POLICY = SMTP_POLICY.clone(cte_type="7bit")


class SmtpMailer:
    """One SMTP session per message: servers drop idle sessions, and a send is rare enough."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        timeout: float = 30,
    ) -> None:
        self._host = host
        self._port = port
        self._timeout = timeout
        self._username = username
        self._password = password
        self._starttls = starttls

    async def send(self, email: Email) -> SendOutcome:
        try:
            message = mime_message(email)
        except ValueError as exc:  # a header with a line break, a malformed address
            return Failed(bounded(f"message cannot be written: {exc}"))
        client = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            timeout=self._timeout,
            username=self._username,
            password=self._password,
            start_tls=self._starttls,
        )
        try:
            return await _session(client, email, message)
        finally:
            client.close()


async def _session(client: aiosmtplib.SMTP, email: Email, message: EmailMessage) -> SendOutcome:
    try:
        await client.connect()
        await client.mail(parseaddr(email.sender)[1])
        await client.rcpt(parseaddr(email.to)[1])
    except aiosmtplib.SMTPResponseException as exc:
        return _refused(exc)
    except OSError as exc:  # refused, timed out or dropped (aiosmtplib's own errors included)
        return Retryable(bounded(f"SMTP server not reached: {exc!r}"))
    except UnicodeEncodeError as exc:  # an address SMTP without SMTPUTF8 cannot carry
        return Failed(bounded(f"address cannot be sent over SMTP: {exc}"))
    except aiosmtplib.SMTPException as exc:  # STARTTLS or AUTH configured but not offered
        return Failed(bounded(f"SMTP server: {exc}"))
    try:
        await client.data(message.as_bytes())
    except aiosmtplib.SMTPResponseException as exc:
        return _refused(exc)
    except (aiosmtplib.SMTPException, OSError) as exc:
        # The message may have been transmitted in full before the answer was lost.
        return Ambiguous(bounded(f"no answer from the SMTP server after DATA: {exc!r}"))
    with contextlib.suppress(aiosmtplib.SMTPException, OSError):
        await client.quit()
    return Sent(str(message["Message-ID"]))


def _refused(exc: aiosmtplib.SMTPResponseException) -> SendOutcome:
    reason = bounded(f"SMTP {exc.code}: {exc.message}")
    if 400 <= exc.code < 500:
        return Retryable(reason)
    return Failed(reason)


def message_id(email: Email) -> str:
    """A `Message-ID` fixed by the idempotency key, so receivers can drop a resent copy."""
    digest = hashlib.sha256(email.idempotency_key.encode()).hexdigest()[:40]
    domain = parseaddr(email.sender)[1].rpartition("@")[2] or "paperboy.invalid"
    return f"<{digest}@{domain}>"


def mime_message(email: Email) -> EmailMessage:
    """The HTML message, with the plain-text version as its alternative when there is one."""
    message = EmailMessage(policy=_POLICY)
    message["From"] = email.sender
    message["To"] = email.to
    message["Subject"] = email.subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id(email)
    if email.text is None:
        message.set_content(email.html, subtype="html")
    else:
        message.set_content(email.text)
        message.add_alternative(email.html, subtype="html")
    return message
