"""Local stand-ins for NewsAPI and Tavily Extract, for tests that run real workers.

Every query gets the same day of articles; an article's URL says what its publisher serves:
`/gone-…` is a 404 (Tavily lists it in `failed_results`), `/paid-…` a subscription wall,
anything else the article. The first `rate_limited` extract requests answer 429.
"""

from __future__ import annotations

import json
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Lock, Thread
from typing import Any
from urllib.parse import parse_qs, urlsplit

ARTICLE_TEXT = "The committee published its findings on chip exports this morning. " * 10
PAYWALL_TEXT = "Subscribe to continue reading. Already a subscriber? Sign in."
NAMES = ("paid-1", "gone-1", "story-1", "story-2", "gone-2", "story-3", "story-4", "story-5")


class _Server:
    def __init__(self) -> None:
        self.lock = Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.reply(self, outer.get(self.path))

            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                outer.reply(self, outer.post(self.path, json.loads(self.rfile.read(size))))

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def get(self, path: str) -> tuple[int, object]:
        return 404, {}

    def post(self, path: str, body: Any) -> tuple[int, object]:
        return 404, {}

    @staticmethod
    def reply(handler: BaseHTTPRequestHandler, answer: tuple[int, object]) -> None:
        status, body = answer
        payload = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class NewsApiStandIn(_Server):
    """`/v2/everything`: the same articles for every query, each URL under the query's path."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: Counter[tuple[str, str]] = Counter()  # (day, q) -> requests

    def get(self, path: str) -> tuple[int, object]:
        parts = urlsplit(path)
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path != "/v2/everything":
            return 404, {"status": "error", "code": "routeNotFound", "message": parts.path}
        with self.lock:
            self.requests[(params["from"][:10], params["q"])] += 1
        slug = "".join(ch for ch in params["q"] if ch.isalnum())
        articles = [
            {
                "source": {"id": None, "name": "Stand-in Times"},
                "title": f"{name} about {params['q']}",
                "description": f"What {name} says about {params['q']}.",
                "url": f"https://news.example/{slug}/{name}",
                "publishedAt": f"{params['from'][:10]}T09:00:00Z",
            }
            for name in NAMES
        ]
        return 200, {"status": "ok", "totalResults": len(articles), "articles": articles}


class TavilyStandIn(_Server):
    """`/extract`: text, a paywall or a 404 by the URL's last part; 429 to the first few."""

    def __init__(self, rate_limited: int = 0) -> None:
        super().__init__()
        self.rate_limited = rate_limited
        self.requests = 0
        self.urls: Counter[str] = Counter()

    def post(self, path: str, body: Any) -> tuple[int, object]:
        with self.lock:
            self.requests += 1
            if self.requests <= self.rate_limited:
                return 429, {"detail": "slow down"}
            url = body["urls"][0]
            self.urls[url] += 1
        name = url.rsplit("/", 1)[-1]
        if name.startswith("gone"):
            return 200, {"results": [], "failed_results": [{"url": url, "error": "404 Not Found"}]}
        text = PAYWALL_TEXT if name.startswith("paid") else ARTICLE_TEXT
        return 200, {"results": [{"url": url, "raw_content": text}], "failed_results": []}
