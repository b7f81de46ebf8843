"""The API as shipped (fly.toml's command, on a free port) caps each request's head and the time
to send it: no unauthenticated connection can make it hold megabytes of headers, or hold a
connection open by trickling them."""

from __future__ import annotations

import http.client
import shlex
import socket
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shared.settings import ApiSettings
from tests.support import API_KEY, BIN, ROOT, SESSION_SECRET, free_port, wait_until

pytestmark = pytest.mark.integration

HEADER_TIMEOUT = 1.0
MEGABYTE = 2**20


def shipped_argv(port: int) -> list[str]:
    """fly.toml's API command, on 127.0.0.1:`port`: the options under test are the shipped ones."""
    command = tomllib.loads((ROOT / "fly.toml").read_text())["processes"]["app"]
    argv = shlex.split(command)
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[argv.index("--port") + 1] = str(port)
    return [str(BIN / argv[0]), *argv[1:]]


def rss_megabytes(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            return sock.recv(12) == b"HTTP/1.1 200"
    except OSError:
        return False


@pytest.fixture
def api(tmp_path: Path, redis_url: str) -> Iterator[tuple[int, int]]:
    """The shipped API process: its port and pid."""
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "API_KEY": API_KEY,
        "SESSION_SECRET": SESSION_SECRET,
        "REDIS_URL": redis_url,
        "SQLITE_PATH": str(tmp_path / "api.db"),
        "HTTP_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
    }
    log = (tmp_path / "api.log").open("wb")
    process = subprocess.Popen(
        shipped_argv(port), env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_until(lambda: answers(port), timeout=20)
        yield port, process.pid
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def response(sock: socket.socket) -> http.client.HTTPResponse:
    answer = http.client.HTTPResponse(sock)
    answer.begin()
    answer.read()
    return answer


def closed_within(sock: socket.socket, seconds: float, keep_sending: Callable[[], None]) -> bytes:
    """What the server says before it closes `sock`, while the client keeps trickling."""
    deadline = time.monotonic() + seconds
    received = b""
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            keep_sending()
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return received
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"the connection was still open after {seconds}s")


def test_a_head_over_the_cap_gets_431_and_the_connection_closed(api: tuple[int, int]) -> None:
    port, _ = api
    with connect(port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * 100_000 + b"\r\n\r\n")
        answer = response(sock)
        after = sock.recv(1)

    assert answer.status == 431
    assert after == b""


def test_many_small_headers_count_towards_the_cap(api: tuple[int, int]) -> None:
    port, _ = api
    limit = ApiSettings.model_fields["http_max_header_bytes"].default
    lines = b"".join(b"X-%d: %s\r\n" % (n, b"v" * 90) for n in range(limit // 90))
    with connect(port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n" + lines + b"\r\n")
        answer = response(sock)

    assert answer.status == 431


def test_ordinary_heads_pass_and_a_body_does_not_count(api: tuple[int, int]) -> None:
    port, _ = api
    body = b"x" * 60_000  # bigger than the head's cap, and sent in the same write as the head
    head = (
        b"POST /generate-digest HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
        b"X-API-Key: " + API_KEY.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with connect(port) as sock:
        sock.sendall(head + body)
        posted = response(sock)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * 8000 + b"\r\n\r\n")
        again = response(sock)

    assert posted.status == 415  # read, authenticated and answered by the app
    assert again.status == 200  # the next request on the same connection starts a fresh count


def test_a_trickled_head_is_cut_off_at_the_header_timeout(api: tuple[int, int]) -> None:
    port, _ = api
    with connect(port) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n")
        said = closed_within(sock, 10, lambda: sock.sendall(b"X-Drip: 1\r\n"))
        elapsed = time.monotonic() - started

    assert said.startswith(b"HTTP/1.1 408")
    assert HEADER_TIMEOUT * 0.9 <= elapsed < HEADER_TIMEOUT + 3


def test_a_silent_connection_is_closed_at_the_header_timeout(api: tuple[int, int]) -> None:
    port, _ = api
    with connect(port) as sock:
        said = closed_within(sock, 10, lambda: None)

    assert said.startswith(b"HTTP/1.1 408")


def test_a_huge_unfinished_head_does_not_grow_the_process(api: tuple[int, int]) -> None:
    port, pid = api
    before = rss_megabytes(pid)
    sent = 0
    with connect(port) as sock:
        try:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nX-Pad: ")
            while sent < 39 * MEGABYTE:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        held = rss_megabytes(pid)

    assert sent < 39 * MEGABYTE  # the server hung up long before
    assert held - before < 8


def test_the_protocol_hooks_it_relies_on_exist_in_the_pinned_uvicorn() -> None:
    assert uvicorn.__version__ == "0.54.0"
    for hook in (
        "connection_made",
        "connection_lost",
        "data_received",
        "on_message_begin",
        "on_headers_complete",
        "on_message_complete",
    ):
        assert callable(getattr(HttpToolsProtocol, hook)), hook
