"""Local stand-ins for the mail providers: a Resend API that answers from a script, and a real
SMTP server that parses what it receives. Both run on their own threads, so a worker process
and an in-process job can reach them alike; each is stopped by the fixture that started it."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from tests.support import free_port

RESEND_KEY = "re_test_0123456789"


@dataclass(frozen=True)
class Answer:
    """One scripted answer; `delay` holds it (the provider being slow), `hang` never answers."""

    status: int = 200
    body: dict[str, Any] | None = None
    delay: float = 0
    hang: bool = False


@dataclass(frozen=True)
class ResendRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class ResendStandIn:
    """Answers `POST /emails` from `script` in order, then 200 with a fresh id."""

    url: str = ""
    script: list[Answer] = field(default_factory=list)
    requests: list[ResendRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    released: threading.Event = field(default_factory=threading.Event)

    def next_answer(self, request: ResendRequest) -> Answer:
        with self.lock:
            self.requests.append(request)
            return self.script.pop(0) if self.script else Answer()

    def received(self) -> list[ResendRequest]:
        with self.lock:
            return list(self.requests)


@contextmanager
def resend_stand_in() -> Iterator[ResendStandIn]:
    state = ResendStandIn()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            request = ResendRequest(self.path, dict(self.headers.items()), json.loads(body))
            answer = state.next_answer(request)
            if answer.hang or answer.delay:
                state.released.wait(None if answer.hang else answer.delay)
                if answer.hang:
                    return
            payload = json.dumps(answer.body or {"id": str(uuid.uuid4())}).encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.released.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass
class Received:
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def html(self) -> str:
        part = self.message.get_body(("html",))
        assert part is not None
        return str(part.get_content())


@dataclass
class Inbox:
    """What the SMTP server got; with `holding` set, it keeps each DATA unanswered until
    `release()`, the way a slow server leaves a sender waiting after the message went out."""

    port: int = 0
    messages: list[Received] = field(default_factory=list)
    holding: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    released: threading.Event = field(default_factory=threading.Event)

    def received(self) -> list[Received]:
        with self.lock:
            return list(self.messages)

    def release(self) -> None:
        self.released.set()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = BytesParser(policy=default_policy).parsebytes(envelope.content)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.messages.append(Received(list(envelope.rcpt_tos), message))
        if self.holding:
            await asyncio.get_running_loop().run_in_executor(None, self.released.wait, 60)
        return "250 OK"


@contextmanager
def smtp_inbox() -> Iterator[Inbox]:
    inbox = Inbox(port=free_port())
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port)
    controller.start()
    try:
        yield inbox
    finally:
        inbox.release()
        controller.stop()
