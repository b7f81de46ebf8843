"""Callback body, signature and guarded delivery, against a real local receiver and respx."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
import respx

from shared.callback import callback_body, deliver, delivery_headers, sign
from shared.models import TaskStatus

SECRET = "whsec-test"
NOW = 1_714_564_800
PUBLIC_URL = "http://93.184.216.34/hooks/paperboy"


@dataclass
class Received:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A minimal HTTP/1.1 receiver on 127.0.0.1 that records what reaches it."""

    port: int = 0
    status: int = 204
    reply: bytes = b""
    connections: int = 0
    requests: list[Received] = field(default_factory=list)
    sni_names: list[str | None] = field(default_factory=list)
    handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        self.connections += 1
        try:
            await self._serve(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, target, _ = head[0].split(" ", 2)
        headers = {}
        for line in filter(None, head[1:]):
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append(Received(method, target, headers, body))
        writer.write(
            f"HTTP/1.1 {self.status} Whatever\r\nContent-Length: {len(self.reply)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + self.reply
        )
        await writer.drain()


async def _serve(receiver: Receiver, tls: ssl.SSLContext | None = None) -> AsyncIterator[Receiver]:
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0, ssl=tls)
    receiver.port = server.sockets[0].getsockname()[1]
    try:
        yield receiver
    finally:
        server.close()
        await server.wait_closed()
        await asyncio.gather(*receiver.handlers)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async for running in _serve(Receiver()):
        yield running


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as http:
        yield http


def _body() -> bytes:
    stamp = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    return callback_body("task-1", TaskStatus.COMPLETED, "<p>digest</p>", None, stamp)


def _headers(body: bytes) -> dict[str, str]:
    return delivery_headers("delivery-1", body, SECRET, NOW)


# --- body and signature -------------------------------------------------------------------


def test_signature_matches_an_independent_hmac() -> None:
    body = _body()
    expected = hmac.new(b"whsec-test", b"1714564800." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, NOW, body) == f"sha256={expected}"


def test_signature_header_follows_the_spec_formula() -> None:
    body = _body()
    headers = _headers(body)
    signed = f"{headers['X-Paperboy-Timestamp']}.".encode() + body
    digest = hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert headers["X-Paperboy-Signature"] == "sha256=" + digest
    assert headers["X-Paperboy-Timestamp"] == "1714564800"
    assert headers["X-Paperboy-Delivery"] == "delivery-1"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "Paperboy-Callback/1"


@pytest.mark.parametrize("secret", [None, ""])
def test_no_signature_without_a_secret(secret: str | None) -> None:
    headers = delivery_headers("delivery-1", _body(), secret, NOW)
    assert "X-Paperboy-Signature" not in headers
    assert headers["X-Paperboy-Timestamp"] == str(NOW)


def test_body_has_exactly_the_receiver_shape() -> None:
    stamp = datetime(2024, 5, 1, 14, 30, 5, tzinfo=timezone(timedelta(hours=2)))
    body = callback_body("task-9", TaskStatus.FAILED, None, "no papers", stamp)
    assert body == (
        b'{"task_id":"task-9","status":"failed","result":null,"error":"no papers",'
        b'"timestamp":"2024-05-01T12:30:05+00:00"}'
    )
    decoded = json.loads(body)
    assert list(decoded) == ["task_id", "status", "result", "error", "timestamp"]
    assert datetime.fromisoformat(decoded["timestamp"]) == stamp


def test_body_refuses_a_naive_timestamp() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        callback_body("task-1", "completed", None, None, datetime(2024, 5, 1))


# --- a real receiver on loopback ----------------------------------------------------------


async def test_delivers_to_a_real_receiver(receiver: Receiver, client: httpx.AsyncClient) -> None:
    body = _body()
    url = f"http://127.0.0.1:{receiver.port}/hooks/paperboy?source=test"
    outcome = await deliver(client, url, body, _headers(body), allow_private=True, timeout=5)
    assert outcome.delivered
    assert outcome.status_code == 204
    assert outcome.error is None
    [request] = receiver.requests
    assert (request.method, request.target, request.body) == (
        "POST",
        "/hooks/paperboy?source=test",
        body,
    )
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "Paperboy-Callback/1"
    assert request.headers["x-paperboy-delivery"] == "delivery-1"
    assert request.headers["x-paperboy-timestamp"] == str(NOW)
    assert request.headers["x-paperboy-signature"] == sign(SECRET, NOW, body)


@pytest.mark.parametrize("spelling", ["127.1", "2130706433", "0x7f000001", "[::ffff:127.0.0.1]"])
async def test_loopback_spellings_reach_the_checked_address_when_allowed(
    receiver: Receiver, client: httpx.AsyncClient, spelling: str
) -> None:
    url = f"http://{spelling}:{receiver.port}/"
    outcome = await deliver(client, url, b"{}", {}, allow_private=True, timeout=5)
    assert outcome.delivered
    assert receiver.requests[0].headers["host"] == f"{spelling}:{receiver.port}"


@pytest.mark.parametrize(
    "spelling", ["127.0.0.1", "127.1", "2130706433", "0x7f000001", "[::ffff:127.0.0.1]"]
)
async def test_loopback_refused_without_allow_private(
    receiver: Receiver, client: httpx.AsyncClient, spelling: str
) -> None:
    url = f"http://{spelling}:{receiver.port}/"
    outcome = await deliver(client, url, b"{}", {}, allow_private=False, timeout=5)
    assert not outcome.delivered
    assert not outcome.retryable
    assert outcome.error is not None
    assert "127.0.0.1" in outcome.error
    assert receiver.connections == 0


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/", "http://0.0.0.0/"],
)
async def test_link_local_and_unspecified_refused_even_when_private_allowed(
    client: httpx.AsyncClient, url: str
) -> None:
    with respx.mock(assert_all_called=False) as router:
        outcome = await deliver(client, url, b"{}", {}, allow_private=True, timeout=5)
        assert not router.calls
    assert not outcome.delivered
    assert not outcome.retryable


async def test_localhost_is_resolved_and_checked(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    url = f"http://localhost:{receiver.port}/hook"
    refused = await deliver(client, url, b"{}", {}, allow_private=False, timeout=5)
    assert not refused.delivered
    assert not refused.retryable
    assert receiver.connections == 0
    outcome = await deliver(client, url, b"{}", {}, allow_private=True, timeout=5)
    assert outcome.delivered
    assert receiver.requests[0].headers["host"] == f"localhost:{receiver.port}"


@pytest.mark.parametrize("host", ["localhost", "2130706433", "0x7f000001"])
async def test_the_request_goes_to_the_checked_address_not_the_name(
    client: httpx.AsyncClient, host: str
) -> None:
    # httpx would look `localhost` up again (or read `2130706433` its own way); the request
    # must instead name the address that was checked.
    resolved = {info[4][0] for info in socket.getaddrinfo(host, 8080, type=socket.SOCK_STREAM)}
    with respx.mock() as router:
        route = router.route(method="POST", host__in=resolved, port=8080).respond(204)
        outcome = await deliver(
            client, f"http://{host}:8080/hook", b"{}", {}, allow_private=True, timeout=5
        )
        assert route.call_count == 1
    assert outcome.delivered
    request = route.calls.last.request
    assert request.url.host in resolved
    assert request.headers["Host"] == f"{host}:8080"


async def test_a_name_is_refused_for_what_dns_answers(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    # `localhost` is refused by name before any lookup; the machine's own host name is not on
    # that list, so only checking the DNS answer can refuse it.
    name = socket.gethostname()
    try:
        answers = {info[4][0] for info in socket.getaddrinfo(name, None)}
    except socket.gaierror:
        answers = set()
    if not answers or not all(ipaddress.ip_address(a).is_loopback for a in answers):
        pytest.skip(f"host name {name!r} does not resolve to loopback only here")
    url = f"http://{name}:{receiver.port}/"
    refused = await deliver(client, url, b"{}", {}, allow_private=False, timeout=5)
    assert not refused.delivered
    assert not refused.retryable
    assert refused.error is not None
    assert "loopback" in refused.error
    assert receiver.connections == 0
    assert (await deliver(client, url, b"{}", {}, allow_private=True, timeout=5)).delivered


async def test_unresolvable_name_is_retryable(client: httpx.AsyncClient) -> None:
    url = "http://paperboy-callback.invalid/hook"
    outcome = await deliver(client, url, b"{}", {}, allow_private=False, timeout=5)
    assert not outcome.delivered
    assert outcome.retryable


@pytest.mark.parametrize(
    "url", ["http://a..example.com/hook", "http://" + "x" * 64 + ".example.com/hook"]
)
async def test_a_host_dns_cannot_carry_is_refused_not_raised(
    client: httpx.AsyncClient, url: str
) -> None:
    # The resolver's codec raised UnicodeError for these, which left the callback pending.
    outcome = await deliver(client, url, b"{}", {}, allow_private=True, timeout=5)
    assert not outcome.delivered
    assert not outcome.retryable
    assert outcome.error is not None
    assert "label" in outcome.error


@pytest.mark.parametrize("host", ["１２７.0.0.1", "localhost.", "[2002:7f00:1::]"])
async def test_other_loopback_spellings_are_refused_at_delivery(
    receiver: Receiver, client: httpx.AsyncClient, host: str
) -> None:
    url = f"http://{host}:{receiver.port}/"
    outcome = await deliver(client, url, b"{}", {}, allow_private=False, timeout=5)
    assert not outcome.delivered
    assert not outcome.retryable
    assert receiver.connections == 0


async def test_a_trailing_dot_name_is_looked_up_and_sent_without_it(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    url = f"http://LocalHost.:{receiver.port}/hook"
    outcome = await deliver(client, url, b"{}", {}, allow_private=True, timeout=5)
    assert outcome.delivered
    assert receiver.requests[0].headers["host"] == f"localhost:{receiver.port}"


async def test_receiver_error_text_is_bounded(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    receiver.status, receiver.reply = 503, b"x" * 100_000
    url = f"http://127.0.0.1:{receiver.port}/"
    outcome = await deliver(client, url, b"{}", {}, allow_private=True, timeout=5)
    assert not outcome.delivered
    assert outcome.retryable
    assert outcome.status_code == 503
    assert outcome.error is not None
    assert outcome.error.startswith("HTTP 503")
    assert len(outcome.error) < 2_200


# --- TLS: the address is pinned, the name is still verified -------------------------------


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A throwaway certificate for the name `localhost` only: server and client contexts."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "localhost")])
    start = datetime.now(UTC) - timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder(subject, subject, key.public_key(), x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return server, ssl.create_default_context(cadata=cert_pem.decode())


@pytest.fixture
async def tls_receiver(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> AsyncIterator[Receiver]:
    receiver = Receiver()
    tls[0].sni_callback = lambda _sock, name, _ctx: receiver.sni_names.append(name)
    async for running in _serve(receiver, tls[0]):
        yield running


@pytest.fixture
async def tls_client(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(verify=tls[1], trust_env=False) as http:
        yield http


async def test_https_connects_to_the_address_and_verifies_the_name(
    tls_receiver: Receiver, tls_client: httpx.AsyncClient
) -> None:
    url = f"https://localhost:{tls_receiver.port}/hook"
    outcome = await deliver(tls_client, url, b"{}", {}, allow_private=True, timeout=5)
    assert outcome.delivered, outcome.error
    assert tls_receiver.sni_names == ["localhost"]
    assert tls_receiver.requests[0].headers["host"] == f"localhost:{tls_receiver.port}"


async def test_https_certificate_must_match_what_the_url_names(
    tls_receiver: Receiver, tls_client: httpx.AsyncClient
) -> None:
    # The certificate names `localhost` only; a URL naming the IP must fail verification.
    url = f"https://127.0.0.1:{tls_receiver.port}/hook"
    outcome = await deliver(tls_client, url, b"{}", {}, allow_private=True, timeout=5)
    assert not outcome.delivered
    assert outcome.retryable
    assert outcome.error is not None
    assert "CERTIFICATE_VERIFY_FAILED" in outcome.error
    assert not tls_receiver.requests


# --- classification, at the transport with respx ------------------------------------------


@pytest.mark.parametrize(
    ("status", "delivered", "retryable"),
    [
        (200, True, False),
        (201, True, False),
        (204, True, False),
        (500, False, True),
        (503, False, True),
        (408, False, True),
        (429, False, True),
        (404, False, False),
        (400, False, False),
        (410, False, False),
        (302, False, False),
    ],
)
async def test_status_is_classified(
    client: httpx.AsyncClient, status: int, delivered: bool, retryable: bool
) -> None:
    with respx.mock() as router:
        route = router.post(PUBLIC_URL).respond(status, headers={"Location": "http://10.0.0.1/"})
        outcome = await deliver(client, PUBLIC_URL, b"{}", {}, allow_private=False, timeout=5)
        assert route.call_count == 1
        assert len(router.calls) == 1  # a redirect is not followed
    assert (outcome.delivered, outcome.retryable, outcome.status_code) == (
        delivered,
        retryable,
        status,
    )
    assert (outcome.error is None) is delivered
    assert outcome.retry_after is None


async def test_request_goes_to_the_literal_with_host_and_headers(
    client: httpx.AsyncClient,
) -> None:
    body = _body()
    with respx.mock() as router:
        route = router.post(PUBLIC_URL + "?a=1").respond(202)
        outcome = await deliver(
            client, PUBLIC_URL + "?a=1#frag", body, _headers(body), allow_private=False, timeout=5
        )
    assert outcome.delivered
    request = route.calls.last.request
    assert request.headers["Host"] == "93.184.216.34"
    assert request.headers["X-Paperboy-Signature"] == sign(SECRET, NOW, body)
    assert request.content == body


async def test_ipv6_literal_is_bracketed_and_keeps_its_port(client: httpx.AsyncClient) -> None:
    url = "http://[2606:2800:220:1:248:1893:25c8:1946]:8443/hook"
    with respx.mock() as router:
        route = router.post(url).respond(200)
        outcome = await deliver(client, url, b"{}", {}, allow_private=False, timeout=5)
    assert outcome.delivered
    assert route.calls.last.request.headers["Host"] == "[2606:2800:220:1:248:1893:25c8:1946]:8443"


async def test_retry_after_seconds(client: httpx.AsyncClient) -> None:
    with respx.mock() as router:
        router.post(PUBLIC_URL).respond(429, headers={"Retry-After": "7"}, text="slow down")
        outcome = await deliver(client, PUBLIC_URL, b"{}", {}, allow_private=False, timeout=5)
    assert outcome.retryable
    assert outcome.retry_after == 7
    assert outcome.error == "HTTP 429 Too Many Requests: slow down"


async def test_retry_after_http_date(client: httpx.AsyncClient) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    with respx.mock() as router:
        router.post(PUBLIC_URL).respond(503, headers={"Retry-After": later})
        outcome = await deliver(client, PUBLIC_URL, b"{}", {}, allow_private=False, timeout=5)
    assert outcome.retryable
    assert outcome.retry_after is not None
    assert 100 < outcome.retry_after <= 120


async def test_connect_timeout_is_retryable(client: httpx.AsyncClient) -> None:
    with respx.mock() as router:
        router.post(PUBLIC_URL).mock(side_effect=httpx.ConnectTimeout("timed out"))
        outcome = await deliver(client, PUBLIC_URL, b"{}", {}, allow_private=False, timeout=5)
    assert not outcome.delivered
    assert outcome.retryable
    assert outcome.status_code is None
    assert outcome.error is not None
    assert "ConnectTimeout" in outcome.error


async def test_dropped_connection_is_retryable(client: httpx.AsyncClient) -> None:
    with respx.mock() as router:
        router.post(PUBLIC_URL).mock(side_effect=httpx.RemoteProtocolError("peer closed"))
        outcome = await deliver(client, PUBLIC_URL, b"{}", {}, allow_private=False, timeout=5)
    assert not outcome.delivered
    assert outcome.retryable


async def test_malformed_url_is_permanent(client: httpx.AsyncClient) -> None:
    for url in ("ftp://93.184.216.34/", "http://user:pw@93.184.216.34/", "http:///nohost"):
        outcome = await deliver(client, url, b"{}", {}, allow_private=True, timeout=5)
        assert not outcome.delivered, url
        assert not outcome.retryable, url
