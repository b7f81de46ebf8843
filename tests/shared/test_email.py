"""Email providers against local stand-ins: respx and a stalling HTTP server for Resend, a real
aiosmtpd server in this process for SMTP, and the `make run` sink."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import date
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from aiosmtpd.controller import Controller
from pydantic import SecretStr, ValidationError

from scripts.mail_sink import start_sink
from shared.mail import (
    Ambiguous,
    Email,
    Failed,
    ResendMailer,
    Retryable,
    Senders,
    Sent,
    SmtpMailer,
    digest_email,
    open_mailer,
    senders,
    welcome_email,
)
from shared.mail.message import MAX_REASON_CHARS
from shared.settings import Settings
from tests.support import free_port, wait_until

RESEND = "http://resend.test"
API_KEY = "re_test_key"
SENDER = "Paperboy Digest <digest@paper-boy.test>"
DIGEST_HTML = (
    "<html><body><h1>Your papers</h1><p>Attention is still all you need — again</p></body></html>"
)


def a_digest(**overrides: Any) -> Email:
    fields: dict[str, Any] = {
        "to": "ada@example.org",
        "sender": SENDER,
        "name": "Ada Lovelace",
        "source_date": date(2026, 11, 22),
        "user_id": "2b7c1f0e-user",
        "task_id": "9f1c2d3e-4b5a-6c7d-8e9f-0a1b2c3d4e5f",
        "html": DIGEST_HTML,
    }
    fields.update(overrides)
    return digest_email(**fields)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


# Messages and settings


def test_digest_subject_key_and_tag_follow_the_old_service() -> None:
    email = a_digest(task_id="task 42/b")
    assert email.subject == "Paperboy | Ada Lovelace's Daily Digest"
    assert email.idempotency_key == "paperboy:2026-11-22:2b7c1f0e-user"
    assert email.tags == {"task_id": "task_42_b"}  # Resend allows letters, digits, _ and -
    assert a_digest(name=None).subject == "Paperboy | Your Daily Digest"
    assert a_digest(name="Ada\r\nBcc: x@evil.test").subject == (
        "Paperboy | Ada Bcc: x@evil.test's Daily Digest"
    )


def test_welcome_is_keyed_by_user() -> None:
    email = welcome_email(to="ada@example.org", sender=SENDER, user_id="u-1", html="<p>hi</p>")
    assert (email.subject, email.idempotency_key) == ("Welcome to Paperboy", "welcome:u-1")


def test_settings_name_what_a_provider_is_missing() -> None:
    with pytest.raises(ValidationError, match="EMAIL_PROVIDER=resend needs RESEND_API_KEY"):
        Settings(email_provider="resend", resend_api_key=SecretStr("k"))
    with pytest.raises(ValidationError, match="EMAIL_PROVIDER=smtp needs SMTP_HOST and EMAIL_FROM"):
        Settings(email_provider="smtp", email_from="a@b.test")


async def test_open_mailer_follows_the_provider(http: httpx.AsyncClient) -> None:
    assert open_mailer(Settings(), http) is None
    assert senders(Settings()) is None
    resend = Settings(
        email_provider="resend", resend_api_key=SecretStr("k"), resend_from_address=SENDER
    )
    assert isinstance(open_mailer(resend, http), ResendMailer)
    assert senders(resend) == Senders(digest=SENDER, welcome=SENDER)
    smtp = Settings(
        email_provider="smtp",
        smtp_host="127.0.0.1",
        email_from="p@localhost",
        welcome_from_address="Welcome <hello@localhost>",
    )
    assert isinstance(open_mailer(smtp, http), SmtpMailer)
    assert senders(smtp) == Senders(digest="p@localhost", welcome="Welcome <hello@localhost>")


# Resend, against respx


@pytest.mark.parametrize("base", [RESEND, RESEND + "/"])
async def test_resend_request_is_exactly_the_contract(http: httpx.AsyncClient, base: str) -> None:
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(f"{RESEND}/emails").respond(200, json={"id": "em_123"})
        outcome = await ResendMailer(http, base, API_KEY).send(a_digest(text="Your papers"))
    assert outcome == Sent("em_123")
    request = route.calls.last.request
    assert str(request.url) == "http://resend.test/emails"
    assert request.headers["Authorization"] == "Bearer re_test_key"
    assert request.headers["Idempotency-Key"] == "paperboy:2026-11-22:2b7c1f0e-user"
    assert json.loads(request.content) == {
        "from": SENDER,
        "to": ["ada@example.org"],
        "subject": "Paperboy | Ada Lovelace's Daily Digest",
        "html": DIGEST_HTML,
        "text": "Your papers",
        "tags": [{"name": "task_id", "value": "9f1c2d3e-4b5a-6c7d-8e9f-0a1b2c3d4e5f"}],
    }


async def test_resend_429_is_retryable_after_its_retry_after_with_the_same_key(
    http: httpx.AsyncClient,
) -> None:
    mailer = ResendMailer(http, RESEND, API_KEY)
    with respx.mock() as mock:
        route = mock.post(f"{RESEND}/emails")
        route.side_effect = [
            httpx.Response(
                429,
                headers={"Retry-After": "7"},
                json={"statusCode": 429, "name": "rate_limit_exceeded", "message": "Too many"},
            ),
            httpx.Response(200, json={"id": "em_2"}),
        ]
        first = await mailer.send(a_digest())
        second = await mailer.send(a_digest())
    assert first == Retryable("Resend 429: rate_limit_exceeded: Too many", retry_after=7.0)
    assert second == Sent("em_2")
    keys = {call.request.headers["Idempotency-Key"] for call in route.calls}
    assert keys == {"paperboy:2026-11-22:2b7c1f0e-user"}


@pytest.mark.parametrize("status", [408, 500, 502, 503])
async def test_resend_server_errors_are_retryable(http: httpx.AsyncClient, status: int) -> None:
    with respx.mock() as mock:
        mock.post(f"{RESEND}/emails").respond(status, text="upstream trouble")
        outcome = await ResendMailer(http, RESEND, API_KEY).send(a_digest())
    assert outcome == Retryable(f"Resend {status}: upstream trouble")


async def test_resend_422_fails_with_the_providers_message(http: httpx.AsyncClient) -> None:
    body = {"statusCode": 422, "name": "validation_error", "message": "Invalid `to` field."}
    with respx.mock() as mock:
        mock.post(f"{RESEND}/emails").respond(422, json=body)
        outcome = await ResendMailer(http, RESEND, API_KEY).send(a_digest())
    assert outcome == Failed("Resend 422: validation_error: Invalid `to` field.")


async def test_a_long_provider_message_is_bounded(http: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        mock.post(f"{RESEND}/emails").respond(400, json={"message": "x" * 5000})
        outcome = await ResendMailer(http, RESEND, API_KEY).send(a_digest())
    assert isinstance(outcome, Failed)
    assert len(outcome.reason) == MAX_REASON_CHARS
    assert outcome.reason.startswith("Resend 400: xxx")


async def test_resend_409_waits_for_a_concurrent_request_but_fails_a_reused_key(
    http: httpx.AsyncClient,
) -> None:
    mailer = ResendMailer(http, RESEND, API_KEY)
    with respx.mock() as mock:
        route = mock.post(f"{RESEND}/emails")
        route.side_effect = [
            httpx.Response(409, json={"name": "concurrent_idempotent_requests", "message": "busy"}),
            httpx.Response(409, json={"name": "invalid_idempotent_request", "message": "reused"}),
        ]
        assert isinstance(await mailer.send(a_digest()), Retryable)
        assert isinstance(await mailer.send(a_digest()), Failed)


async def test_resend_success_without_an_id_is_ambiguous(http: httpx.AsyncClient) -> None:
    with respx.mock() as mock:
        mock.post(f"{RESEND}/emails").respond(200, json={})
        outcome = await ResendMailer(http, RESEND, API_KEY).send(a_digest())
    assert outcome == Ambiguous("Resend answered 200 without an email id")


async def test_resend_not_reached_is_retryable(http: httpx.AsyncClient) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    outcome = await ResendMailer(http, closed, API_KEY).send(a_digest())
    assert isinstance(outcome, Retryable)
    assert "ConnectError" in outcome.reason


# Resend, against a real server that reads the request and never answers it


@dataclass
class Stalling:
    """HTTP on 127.0.0.1 that reads each request in full, then stalls or hangs up."""

    hang_up: bool = False
    read: bool = True
    port: int = 0
    bodies: list[bytes] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        if not self.read:
            await self.release.wait()
            writer.close()
            return
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        assert length is not None
        self.bodies.append(await reader.readexactly(int(length.group(1))))
        if not self.hang_up:
            await self.release.wait()
        writer.close()


@pytest.fixture
async def stalling() -> AsyncIterator[Stalling]:
    stand_in = Stalling()
    server = await asyncio.start_server(stand_in.handle, "127.0.0.1", 0)
    stand_in.port = server.sockets[0].getsockname()[1]
    yield stand_in
    stand_in.release.set()
    server.close()
    await server.wait_closed()
    await asyncio.gather(*stand_in.handlers, return_exceptions=True)


async def test_resend_read_timeout_after_sending_is_ambiguous(
    http: httpx.AsyncClient, stalling: Stalling
) -> None:
    mailer = ResendMailer(http, f"http://127.0.0.1:{stalling.port}", API_KEY, timeout=0.3)
    outcome = await mailer.send(a_digest())
    assert isinstance(outcome, Ambiguous)
    assert "ReadTimeout" in outcome.reason
    assert [json.loads(body)["to"] for body in stalling.bodies] == [["ada@example.org"]]


async def test_resend_connection_dropped_after_sending_is_ambiguous(
    http: httpx.AsyncClient, stalling: Stalling
) -> None:
    stalling.hang_up = True
    outcome = await ResendMailer(http, f"http://127.0.0.1:{stalling.port}", API_KEY).send(
        a_digest()
    )
    assert isinstance(outcome, Ambiguous)
    assert len(stalling.bodies) == 1


async def test_resend_body_left_unwritten_is_retryable(
    http: httpx.AsyncClient, stalling: Stalling
) -> None:
    stalling.read = False  # loopback buffers fill up long before 32 MB
    mailer = ResendMailer(http, f"http://127.0.0.1:{stalling.port}", API_KEY, timeout=0.5)
    outcome = await mailer.send(a_digest(html="x" * 32_000_000))
    assert isinstance(outcome, Retryable)
    assert "WriteTimeout" in outcome.reason


# SMTP, against a real aiosmtpd server in this process


@dataclass
class Inbox:
    """aiosmtpd handler that parses what it accepts; it can refuse a recipient or the data."""

    rcpt_reply: str | None = None
    data_reply: str | None = None
    stall: bool = False
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.stall:
            await asyncio.get_running_loop().create_future()  # never answers; stop() cancels it
        if self.data_reply:
            return self.data_reply
        self.messages.append(BytesParser(policy=default_policy).parsebytes(envelope.content))
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 2.0.0 queued"


@dataclass
class SmtpServer:
    inbox: Inbox
    port: int

    def mailer(self, timeout: float = 10) -> SmtpMailer:
        return SmtpMailer("127.0.0.1", self.port, starttls=False, timeout=timeout)


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield SmtpServer(inbox, port)
    controller.stop()


async def test_smtp_delivers_the_html_digest_to_the_subscriber(smtp_server: SmtpServer) -> None:
    email = a_digest(to="Ada Lovelace <ada@example.org>", text="Your papers, in plain text")
    outcome = await smtp_server.mailer().send(email)
    [message] = smtp_server.inbox.messages
    assert smtp_server.inbox.envelopes == [("digest@paper-boy.test", ["ada@example.org"])]
    assert message["To"] == "Ada Lovelace <ada@example.org>"
    assert message["From"] == SENDER
    assert message["Subject"] == "Paperboy | Ada Lovelace's Daily Digest"
    html = message.get_body(("html",))
    assert html is not None and html.get_content().rstrip() == DIGEST_HTML
    plain = message.get_body(("plain",))
    assert plain is not None and plain.get_content().rstrip() == "Your papers, in plain text"
    assert outcome == Sent(message["Message-ID"])


async def test_smtp_message_id_comes_from_the_idempotency_key(smtp_server: SmtpServer) -> None:
    mailer = smtp_server.mailer()
    await mailer.send(a_digest())
    await mailer.send(a_digest(html="<p>a retry, same key</p>"))
    await mailer.send(a_digest(user_id="another-user"))
    ids = [message["Message-ID"] for message in smtp_server.inbox.messages]
    assert ids[0] == ids[1] != ids[2]
    assert re.fullmatch(r"<[0-9a-f]{40}@paper-boy\.test>", ids[0])


@pytest.mark.parametrize(
    ("stage", "reply", "outcome"),
    [
        ("rcpt_reply", "450 4.2.1 mailbox busy", Retryable("SMTP 450: 4.2.1 mailbox busy")),
        ("rcpt_reply", "550 5.1.1 no such user", Failed("SMTP 550: 5.1.1 no such user")),
        ("data_reply", "451 4.3.0 try again later", Retryable("SMTP 451: 4.3.0 try again later")),
        ("data_reply", "554 5.7.1 message refused", Failed("SMTP 554: 5.7.1 message refused")),
    ],
)
async def test_smtp_refusals_are_classified_by_reply_code(
    smtp_server: SmtpServer, stage: str, reply: str, outcome: Retryable | Failed
) -> None:
    setattr(smtp_server.inbox, stage, reply)
    assert await smtp_server.mailer().send(a_digest()) == outcome
    assert smtp_server.inbox.messages == []


async def test_smtp_no_answer_after_data_is_ambiguous(smtp_server: SmtpServer) -> None:
    smtp_server.inbox.stall = True
    outcome = await smtp_server.mailer(timeout=0.5).send(a_digest())
    assert isinstance(outcome, Ambiguous)
    assert "after DATA" in outcome.reason


async def test_smtp_server_not_reached_is_retryable() -> None:
    mailer = SmtpMailer("127.0.0.1", free_port(), starttls=False, timeout=2)
    outcome = await mailer.send(a_digest())
    assert isinstance(outcome, Retryable)


async def test_smtp_starttls_required_but_not_offered_fails(smtp_server: SmtpServer) -> None:
    mailer = SmtpMailer("127.0.0.1", smtp_server.port, starttls=True, timeout=5)
    outcome = await mailer.send(a_digest())
    assert isinstance(outcome, Failed)
    assert "STARTTLS" in outcome.reason


# The `make run` sink


async def test_the_sink_keeps_each_message_as_eml_and_html(tmp_path: Path) -> None:
    port = free_port()
    controller = start_sink(tmp_path / "mail", port)
    try:
        outcome = await SmtpMailer("127.0.0.1", port, starttls=False).send(a_digest())
    finally:
        controller.stop()
    assert isinstance(outcome, Sent)
    [eml] = wait_until(lambda: list((tmp_path / "mail").glob("*.eml")), timeout=5)
    message = BytesParser(policy=default_policy).parsebytes(eml.read_bytes())
    assert message["To"] == "ada@example.org"
    assert eml.with_suffix(".html").read_text().rstrip() == DIGEST_HTML
