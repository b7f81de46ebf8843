"""Signed webhook callbacks: the body, its headers, and one delivery to a checked address."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import SplitResult, urlsplit, urlunsplit

import httpx

from shared import netguard
from shared.retry import is_retryable_status, retry_after

USER_AGENT = "Paperboy-Callback/1"
DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_ERROR_BYTES = 2048


@dataclass(frozen=True)
class DeliveryOutcome:
    """What one delivery attempt came to; `retryable` says whether another attempt may succeed."""

    delivered: bool
    retryable: bool
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None


def callback_body(
    task_id: str, status: str, result: object | None, error: str | None, timestamp: datetime
) -> bytes:
    """The compact JSON `{task_id, status, result, error, timestamp}` existing receivers read."""
    if timestamp.tzinfo is None:
        raise ValueError("the callback timestamp must be timezone-aware")
    payload = {
        "task_id": task_id,
        "status": str(status),
        "result": result,
        "error": error,
        "timestamp": timestamp.astimezone(UTC).isoformat(),
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """`sha256=` + hex HMAC-SHA256 under `secret` of `"<timestamp>.<raw body>"`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def delivery_headers(delivery_id: str, body: bytes, secret: str | None, now: int) -> dict[str, str]:
    """The callback's headers; the signature only when a (non-empty) secret is set."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Paperboy-Delivery": delivery_id,
        "X-Paperboy-Timestamp": str(now),
    }
    if secret:
        headers["X-Paperboy-Signature"] = sign(secret, now, body)
    return headers


async def deliver(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    allow_private: bool,
    timeout: float,  # noqa: ASYNC109 - the caller's bound, applied with asyncio.timeout
) -> DeliveryOutcome:
    """POST `body` to `url` once, connecting only to addresses that passed `netguard`.

    The host is resolved here and every address is checked; the request then goes to a checked
    address itself, with the original `Host` header and (for https) SNI name, so a second DNS
    answer cannot swap the target. Redirects are not followed; `timeout` bounds the whole attempt.
    """
    try:
        async with asyncio.timeout(timeout):
            host = netguard.check_url(url, allow_private=allow_private)
            request = _Request(urlsplit(url), host, body, headers, httpx.Timeout(timeout))
            addresses = await _addresses(request, allow_private=allow_private)
            return await _post_first(client, request, addresses)
    except (netguard.UnsafeTargetError, httpx.InvalidURL) as exc:
        return _fail(str(exc))
    except _UnresolvedError as exc:
        return _retry(str(exc))
    except TimeoutError:
        return _retry(f"no answer within {timeout:g} s")


class _UnresolvedError(Exception):
    """The host could not be looked up this time; a later attempt may succeed."""


@dataclass(frozen=True)
class _Request:
    parts: SplitResult
    host: str  # as netguard.check_url normalised it: the name looked up, sent and verified
    body: bytes
    headers: Mapping[str, str]
    limits: httpx.Timeout


async def _post_first(
    client: httpx.AsyncClient, request: _Request, addresses: list[netguard.IPAddress]
) -> DeliveryOutcome:
    failure = "no address to connect to"
    for address in addresses:
        try:
            return await _post(client, request, address)
        except httpx.ConnectError as exc:
            failure = _describe(exc)  # nothing was sent, so the next checked address may answer
        except httpx.TransportError as exc:
            return _retry(_describe(exc))
    return _retry(failure)


async def _addresses(request: _Request, *, allow_private: bool) -> list[netguard.IPAddress]:
    host, parts = request.host, request.parts
    literal = netguard.parse_ip(host)
    if literal is not None:
        return [literal]  # check_url has checked it
    port = parts.port or DEFAULT_PORTS[parts.scheme]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        # gaierror, herror, or the codec refusing a name: every way the lookup can fail is one
        # failed attempt, so the retry window still ends it rather than leaving it pending.
        raise _UnresolvedError(f"could not resolve {host}: {exc}") from exc
    addresses = list(dict.fromkeys(_resolved(str(info[4][0])) for info in infos))
    if not addresses:
        raise _UnresolvedError(f"could not resolve {host}: no addresses")
    for address in addresses:
        netguard.check_address(address, allow_private=allow_private)
    return addresses


def _resolved(text: str) -> netguard.IPAddress:
    address = netguard.parse_ip(text)
    if address is None:
        raise netguard.UnsafeTargetError(f"DNS answered with something other than an IP: {text}")
    return address


async def _post(
    client: httpx.AsyncClient, request: _Request, address: netguard.IPAddress
) -> DeliveryOutcome:
    parts, host = request.parts, request.host
    literal = f"[{address}]" if address.version == 6 else str(address)
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    headers = httpx.Headers(request.headers)
    headers["Host"] = _host_header(parts, host)
    # Identity encoding keeps the bounded read of an error body bounded after decoding too.
    headers["Accept-Encoding"] = "identity"
    by_name = parts.scheme == "https" and netguard.parse_ip(host) is None
    extensions = {"sni_hostname": host} if by_name else {}
    async with client.stream(
        "POST",
        target,
        content=request.body,
        headers=headers,
        timeout=request.limits,
        follow_redirects=False,
        extensions=extensions,
    ) as response:
        return await _classify(response)


def _host_header(parts: SplitResult, host: str) -> str:
    host = f"[{host}]" if ":" in host else host
    port = parts.port
    return host if port in (None, DEFAULT_PORTS[parts.scheme]) else f"{host}:{port}"


async def _classify(response: httpx.Response) -> DeliveryOutcome:
    code = response.status_code
    if response.is_success:
        return DeliveryOutcome(delivered=True, retryable=False, status_code=code)
    excerpt = await _excerpt(response)
    error = f"HTTP {code} {response.reason_phrase}" + (f": {excerpt}" if excerpt else "")
    if is_retryable_status(code):
        return DeliveryOutcome(False, True, code, error, retry_after(response.headers))
    return DeliveryOutcome(False, False, code, error)


async def _excerpt(response: httpx.Response) -> str:
    data = b""
    # The status decides the outcome; a body that breaks off only shortens the error text.
    with contextlib.suppress(httpx.HTTPError):
        async for chunk in response.aiter_raw():
            data += chunk
            if len(data) >= MAX_ERROR_BYTES:
                break
    return " ".join(data[:MAX_ERROR_BYTES].decode("utf-8", "replace").split())


def _describe(exc: httpx.TransportError) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _retry(error: str) -> DeliveryOutcome:
    return DeliveryOutcome(delivered=False, retryable=True, error=error)


def _fail(error: str) -> DeliveryOutcome:
    return DeliveryOutcome(delivered=False, retryable=False, error=error)
