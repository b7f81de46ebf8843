"""What the process tests share that is not a fixture: a private Redis, a callback receiver's
records, the environment and handles of worker and API processes, a flaky local arXiv.

The fixtures that start and stop these live in tests/conftest.py; test files import from here,
never from another test file or a conftest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.support import API_KEY, ROOT, SESSION_SECRET, SIGNING_SECRET, wait_until

SAMPLE = ROOT / "paperboy_worker" / "samples" / "arxiv_sample.xml"


@dataclass
class RedisServer:
    """A private redis-server for tests that flush or restart Redis."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    appendonly: bool = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/1"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--appendfsync",
                "always",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        wait_until(lambda: pings(client), timeout=10)
        client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def crash(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, db=1)


def pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


@dataclass
class Receiver:
    """A local HTTP server that records every POST; `fail_next` answers 503 that many times."""

    port: int = 0
    deliveries: list[Delivery] = field(default_factory=list)
    fail_next: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def for_task(self, task_id: str) -> list[Delivery]:
        with self.lock:
            return [d for d in self.deliveries if d.json.get("task_id") == task_id]


def base_env(redis_url: str, sqlite_path: Path, **overrides: Any) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PAPERBOY", "REDIS_URL", "STATE_", "SQLITE_", "LLM_", "OPENAI_"))
    }
    env.update(
        {
            "REDIS_URL": redis_url,
            "SQLITE_PATH": str(sqlite_path),
            "STATE_BACKEND": "sqlite",
            "API_KEY": API_KEY,
            "SESSION_SECRET": SESSION_SECRET,
            "LLM_PROVIDER": "offline",
            "CALLBACK_ALLOW_PRIVATE_NETWORKS": "true",
            "CALLBACK_SIGNING_SECRET": SIGNING_SECRET,
            "CALLBACK_BACKOFF_SECONDS": "[0.2, 0.5, 1]",
            "RETRY_BACKOFF_SECONDS": "[0.3, 0.8, 1.6, 3]",
            "WORKER_POLL_DELAY": "0.05",
            "LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update({key.upper(): str(value) for key, value in overrides.items()})
    return env


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def stop(self, timeout: float = 30) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@dataclass
class Stack:
    """A running API process and the way to reach it."""

    url: str
    env: dict[str, str]
    client: httpx.Client

    def post_digest(self, body: dict[str, Any], **headers: str) -> httpx.Response:
        return self.client.post("/generate-digest", json=body, headers=headers)

    def status(self, task_id: str) -> dict[str, Any]:
        response = self.client.get(f"/digest-status/{task_id}")
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def wait_status(self, task_id: str, statuses: set[str], timeout: float = 30) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            status = self.status(task_id)
            return status if status["status"] in statuses else None

        return wait_until(check, timeout)  # type: ignore[no-any-return]


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
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/query"

    def __enter__(self) -> FlakyArxiv:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# Fault drills

FAST_LEASES = {
    "lease_seconds": "4",
    "heartbeat_seconds": "1",
    "reaper_interval_seconds": "1",
    "reconcile_interval_seconds": "2",
    "reconcile_grace_seconds": "1",
}


def holder(stack: Stack, task_id: str, workers: list[Proc]) -> Proc:
    """The worker process running the task now (its id names its pid)."""

    def find() -> Proc | None:
        status = stack.status(task_id)
        if status["status"] != "processing" or not status["worker_id"]:
            return None
        pid = int(status["worker_id"].split("-")[-2])
        return next((w for w in workers if w.process.pid == pid), None)

    return wait_until(find, timeout=20)  # type: ignore[no-any-return]
