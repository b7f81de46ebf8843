"""Shared fixtures: Redis on a test database, real worker and API processes, a callback receiver."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.postgrest_bed import BedError, PostgrestBed
from tests.processes import Proc, Stack
from tests.receiver import Receiver, running_receiver
from tests.redis_server import RedisServer
from tests.support import (
    API_KEY,
    API_OPTIONS,
    BIN,
    REDIS_DB,
    REDIS_HOST,
    REDIS_PORT,
    ROOT,
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


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as state:
        yield state


# Processes


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """Start workers and API servers; every one is stopped when the test ends."""
    started: list[Proc] = []

    def start(kind: str, env: dict[str, str], port: int | None = None) -> Proc:
        if kind == "worker":
            argv = [str(BIN / "python"), "-m", "paperboy_worker"]
        elif kind == "arq-worker":  # arq's own command line, which the SPEC names
            argv = [str(BIN / "arq"), "paperboy_worker.WorkerSettings"]
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
