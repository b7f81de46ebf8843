"""A local NewsAPI for tests: `GET /v2/everything` answers the articles it was given, whatever
the query, so worker processes can fetch news without the network (`NEWSAPI_BASE_URL=fake.url`).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


class FakeNewsAPI:
    def __init__(self, articles: list[dict[str, Any]]) -> None:
        self.articles = articles
        self.queries: list[str] = []  # the request paths, with their query strings
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeNewsAPI:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def page(self, path: str) -> tuple[int, dict[str, Any]]:
        self.queries.append(path)
        if not path.startswith("/v2/everything"):
            return 404, {"status": "error", "code": "notFound", "message": "No such endpoint"}
        body = {"status": "ok", "totalResults": len(self.articles), "articles": self.articles}
        return 200, body


def _handler(fake: FakeNewsAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = fake.page(self.path)
            data = json.dumps(body).encode()  # a NUL in a text goes out as "\u0000"
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler
