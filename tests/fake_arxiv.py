"""A local arXiv API: answers 503 to its first requests, then the bundled sample feed."""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

from tests.support import ROOT

SAMPLE = ROOT / "paperboy_worker" / "samples" / "arxiv_sample.xml"


class FlakyArxiv:
    """A local arXiv API that answers 503 to its first `failures` requests, then the sample."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.request_times: list[float] = []
        feed = SAMPLE.read_bytes()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.request_times.append(time.monotonic())
                failing = len(outer.request_times) <= outer.failures
                payload = b"busy" if failing else feed
                self.send_response(503 if failing else 200)
                self.send_header("Content-Type", "application/atom+xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/query"

    def __enter__(self) -> FlakyArxiv:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
