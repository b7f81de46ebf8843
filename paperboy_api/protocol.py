"""uvicorn's httptools protocol with two limits it lacks: the size of a request's head (request
line and headers) and the time a client may take to send it.

Without them, one unauthenticated connection can make the API hold megabytes of unfinished
headers for as long as it likes. Served with `uvicorn ... --http paperboy_api.protocol:Protocol`;
the limits are `HTTP_MAX_HEADER_BYTES` and `HTTP_HEADER_TIMEOUT_SECONDS`. This is the one module
that reaches into uvicorn's protocol; tests/api/test_protocol.py pins what it relies on.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shared.settings import ApiSettings

HEAD_END = b"\r\n\r\n"


def _answer(status: str, message: str) -> bytes:
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(message)}\r\nconnection: close\r\n\r\n{message}"
    ).encode("ascii")


TOO_LARGE = _answer("431 Request Header Fields Too Large", "Request headers too large")
TOO_SLOW = _answer("408 Request Timeout", "Request headers not received in time")


class Protocol(HttpToolsProtocol):
    """Counts the bytes of each request's head as they arrive, and answers 431 once they pass
    the limit; answers 408 when a head is still incomplete when its time is up. The time runs
    from the connection's start, then from the first byte of each later request."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        settings: ApiSettings = self.app_state["settings"]
        self._max_head = settings.http_max_header_bytes
        self._head_timeout = settings.http_header_timeout_seconds
        self._head_bytes: int | None = 0  # None while a request's body or response is under way
        self._tail = b""
        self._deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        if self._head_bytes is not None:
            self._head_bytes += self._head_part(data)
            if self._head_bytes > self._max_head:
                self._refuse(TOO_LARGE)
                return
        super().data_received(data)

    def _head_part(self, data: bytes) -> int:
        """How much of `data` belongs to the head: up to its blank line, or all of it."""
        seen = self._tail + data
        self._tail = seen[-(len(HEAD_END) - 1) :]
        end = seen.find(HEAD_END)
        return len(data) if end < 0 else end + len(HEAD_END) - (len(seen) - len(data))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        self._tail = b""
        self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._head_bytes = 0  # what follows is the next request's head
        super().on_message_complete()

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self._head_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self._head_bytes is not None and not self.transport.is_closing():
            self._refuse(TOO_SLOW)

    def _refuse(self, answer: bytes) -> None:
        self._disarm()
        self.transport.write(answer)
        self.transport.close()
