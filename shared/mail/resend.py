"""Sending through Resend's HTTP API (`POST {base}/emails`), one outcome per call."""

from __future__ import annotations

from typing import Any

import httpx

from shared.httpjson import json_object
from shared.mail.message import Ambiguous, Email, Failed, Retryable, SendOutcome, Sent, bounded
from shared.retry import is_retryable_status, retry_after

# Another request with the same key is still being processed: its answer is worth waiting for.
_CONCURRENT_KEY = "concurrent_idempotent_requests"

# Raised before a byte of the request can have been processed: no connection, no pooled slot,
# or a body left incomplete (a server cannot act on a request it did not read to the end).
_NOT_SENT: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.WriteTimeout,
    httpx.WriteError,
)
# The request could not be written at all; another attempt would be refused the same way.
_UNSENDABLE: tuple[type[httpx.TransportError], ...] = (
    httpx.LocalProtocolError,
    httpx.UnsupportedProtocol,
)


class ResendMailer:
    """Resend on the process's shared httpx client; the idempotency key makes retries safe."""

    def __init__(
        self, client: httpx.AsyncClient, base_url: str, api_key: str, *, timeout: float = 30
    ) -> None:
        self._client = client
        self._url = base_url.rstrip("/") + "/emails"
        self._api_key = api_key
        self._timeout = timeout

    async def send(self, email: Email) -> SendOutcome:
        headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Idempotency-Key": email.idempotency_key,
        }
        try:
            response = await self._client.post(
                self._url, headers=headers, json=resend_body(email), timeout=self._timeout
            )
        except _UNSENDABLE as exc:
            return Failed(bounded(f"request to Resend cannot be sent: {exc!r}"))
        except _NOT_SENT as exc:
            return Retryable(bounded(f"Resend not reached: {exc!r}"))
        except httpx.TransportError as exc:
            # Read timeouts, dropped connections, broken answers: the request was written and
            # Resend may have accepted it.
            return Ambiguous(bounded(f"no answer from Resend after sending: {exc!r}"))
        return outcome_of(response)


def resend_body(email: Email) -> dict[str, Any]:
    body: dict[str, Any] = {
        "from": email.sender,
        "to": [email.to],
        "subject": email.subject,
        "html": email.html,
        "tags": [{"name": name, "value": value} for name, value in email.tags.items()],
    }
    if email.text is not None:
        body["text"] = email.text
    return body


def outcome_of(response: httpx.Response) -> SendOutcome:
    """What Resend's answer means for the delivery."""
    status = response.status_code
    if response.is_success:
        message_id = json_object(response).get("id")
        if isinstance(message_id, str) and message_id:
            return Sent(message_id)
        return Ambiguous(f"Resend answered {status} without an email id")
    name, message = _error(response)
    reason = bounded(f"Resend {status}: " + (f"{name}: {message}" if name else message))
    if is_retryable_status(status) or name == _CONCURRENT_KEY:
        return Retryable(reason, retry_after(response.headers))
    return Failed(reason)


def _error(response: httpx.Response) -> tuple[str, str]:
    """Resend's error `name` and `message`, or the raw body when it sent something else."""
    data = json_object(response)
    message = data.get("message")
    if not isinstance(message, str) or not message:
        return "", response.text or response.reason_phrase
    name = data.get("name")
    return (name if isinstance(name, str) else ""), message
