"""Shared fixtures: Redis on a test database, real worker and API processes, a callback receiver."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.postgrest_bed import BedError, PostgrestBed
from tests.support import (
    API_KEY,
    API_OPTIONS,
    BIN,
    REDIS_DB,
    REDIS_HOST,
    REDIS_PORT,
    ROOT,
    SESSION_SECRET,
    SIGNING_SECRET,
    free_port,
    wait_until,
)

# Redis


def clean_redis(client: redis.Redis) -> None:
    """Delete what Paperboy's tests create: arq's keys and our own."""
    for pattern in ("arq:*", "paperboy:*"):
        keys = list(client.scan_iter(pattern, count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture
def redis_url() -> Iterator[str]:
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail(f"Redis is not answering on {REDIS_HOST}:{REDIS_PORT}")
    clean_redis(client)
    yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
    clean_redis(client)
    client.close()


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
        wait_until(lambda: _pings(client), timeout=10)
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


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path)
    server.start()
    yield server
    server.stop()


# Supabase: a real PostgREST


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # `-m postgrest` selects every test on the real PostgREST, whichever fixture brought it in.
    for item in items:
        if "postgrest" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgrest)


@pytest.fixture(scope="session")
def postgrest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgrestBed]:
    """One throwaway database and PostgREST per test run; fails, never skips, when a tool is missing."""
    bed = PostgrestBed(tmp_path_factory.mktemp("postgrest"))
    try:
        problem = _start(bed)
        if problem:
            pytest.fail(problem, pytrace=False)
        yield bed
    finally:
        bed.stop()


def _start(bed: PostgrestBed) -> str | None:
    try:
        bed.start()
    except BedError as exc:
        return str(exc)
    return None


@pytest.fixture
def empty_postgrest(postgrest: PostgrestBed) -> PostgrestBed:
    """The run's PostgREST with every table emptied, so a test sees only its own rows."""
    postgrest.truncate()
    return postgrest


# Callback receiver


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


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with state.lock:
                failing = state.fail_next > 0
                if failing:
                    state.fail_next -= 1
                else:
                    state.deliveries.append(Delivery(dict(self.headers.items()), body))
            self.send_response(503 if failing else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


# Processes


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


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """Start workers and API servers; every one is stopped when the test ends."""
    started: list[Proc] = []

    def start(kind: str, env: dict[str, str], port: int | None = None) -> Proc:
        if kind == "worker":
            argv = [str(BIN / "python"), "-m", "paperboy_worker"]
        else:
            argv = [
                str(BIN / "uvicorn"),
                "paperboy_api.app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                *API_OPTIONS,
            ]
        log_path = tmp_path / f"{kind}-{len(started)}.log"
        with log_path.open("wb") as out:
            process = subprocess.Popen(
                argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )
        proc = Proc(f"{kind}-{len(started)}", process, log_path)
        started.append(proc)
        return proc

    yield start
    for proc in reversed(started):
        proc.stop()


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


@pytest.fixture
def start_api(processes: Callable[..., Proc]) -> Iterator[Callable[[dict[str, str]], Stack]]:
    clients: list[httpx.Client] = []

    def start(env: dict[str, str]) -> Stack:
        port = free_port()
        processes("api", env, port)
        url = f"http://127.0.0.1:{port}"
        client = httpx.Client(base_url=url, headers={"X-API-Key": API_KEY}, timeout=10)
        clients.append(client)
        wait_until(lambda: _answers(client), timeout=20)
        return Stack(url, env, client)

    yield start
    for client in clients:
        client.close()


def _answers(client: httpx.Client) -> bool:
    with contextlib.suppress(httpx.TransportError):
        return client.get("/health").status_code == 200
    return False
