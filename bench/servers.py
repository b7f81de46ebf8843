"""Lifecycles of everything the benchmark runs: a private Redis, the API, Paperboy and bare arq
workers, a callback receiver, and a local OpenAI-compatible provider.

Every server binds 127.0.0.1; every wait has a deadline; `Lab.close()` stops every process it
started (by its own pid, never by name) and removes its temporary directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import redis

from shared import keys

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DATA = Path(__file__).resolve().parent / "data"
ONE_ENTRY_FEED = DATA / "one_entry.xml"
API_KEY = "bench-key-0123456789"
BARE_QUEUE = "bench:bare"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.02) -> T:
    """Poll `check` until it returns something truthy; raise after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g}s")
        time.sleep(interval)


@dataclass
class Proc:
    """A child process the benchmark started, with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def status_kib(self, field: str) -> int:
        """A `VmRSS`/`VmHWM`-style field of /proc/<pid>/status, in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        return ticks / os.sysconf("SC_CLK_TCK")

    def thread_cpu(self) -> tuple[float, float]:
        """CPU seconds of the main thread (the event loop) and of all the other threads."""
        fields = Path(f"/proc/{self.pid}/task/{self.pid}/stat").read_text().rsplit(")", 1)[1]
        values = fields.split()
        main = (int(values[11]) + int(values[12])) / os.sysconf("SC_CLK_TCK")
        return main, max(self.cpu_seconds() - main, 0.0)

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            self.popen.send_signal(sig)

    def stop(self, timeout: float = 15) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGCONT)
            self.popen.terminate()
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)


class Lab:
    """A temporary directory and the processes started in it; `close()` undoes both."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="paperboy-bench-"))
        self.procs: list[Proc] = []
        self._count = 0

    def path(self, name: str) -> Path:
        return self.dir / name

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        self._count += 1
        log_path = self.dir / f"{self._count:03d}-{name}.log"
        with log_path.open("wb") as out:
            popen = subprocess.Popen(
                argv, env=env, cwd=self.dir, stdout=out, stderr=subprocess.STDOUT
            )
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc, timeout: float = 15) -> None:
        proc.stop(timeout)
        with contextlib.suppress(ValueError):
            self.procs.remove(proc)

    def close(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop(timeout=10)
        self.procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)


# Redis


@dataclass
class RedisServer:
    proc: Proc
    port: int

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db)

    def flush(self) -> None:
        client = self.client()
        try:
            client.flushall()
        finally:
            client.close()

    def commands_processed(self) -> int:
        client = self.client()
        try:
            stats: dict[str, Any] = client.info("stats")  # type: ignore[assignment]
            return int(stats["total_commands_processed"])
        finally:
            client.close()

    def commandstats(self) -> dict[str, int]:
        client = self.client()
        try:
            stats: dict[str, Any] = client.info("commandstats")  # type: ignore[assignment]
        finally:
            client.close()
        return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def start_redis(lab: Lab, name: str = "redis") -> RedisServer:
    port = free_port()
    data = lab.path(f"{name}-data")
    data.mkdir()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no", "--dir", str(data), "--protected-mode", "yes"]
    proc = lab.spawn(name, argv, base_env())
    server = RedisServer(proc, port)

    def pings() -> bool:
        client = server.client()
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False
        finally:
            client.close()

    wait_for(pings, 10, "redis-server start")
    return server


# Environments


def base_env() -> dict[str, str]:
    """A minimal environment: nothing from the caller's shell can change a setting."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TZ")}
    env.update({"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
    return env


def paperboy_env(redis_url: str, sqlite_path: Path, **overrides: Any) -> dict[str, str]:
    """The shipped defaults, plus what a local benchmark needs: its Redis and store, loopback
    callbacks, JSON logs (as in production), and `overrides` (upper-cased setting names)."""
    env = base_env()
    env.update(
        {
            "REDIS_URL": redis_url,
            "STATE_BACKEND": "sqlite",
            "SQLITE_PATH": str(sqlite_path),
            "API_KEY": API_KEY,
            "SESSION_SECRET": "bench-session-secret-0123456789abcdef",
            "LLM_PROVIDER": "offline",
            "SOURCE_MODE": "sample",
            "CALLBACK_ALLOW_PRIVATE_NETWORKS": "true",
            "CALLBACK_SIGNING_SECRET": "bench-signing-secret",
            "LOG_FORMAT": "json",
        }
    )
    env.update({key.upper(): str(value) for key, value in overrides.items()})
    return env


def llm_env(
    redis_url: str, sqlite_path: Path, provider_url: str, **overrides: Any
) -> dict[str, str]:
    """`paperboy_env` with the OpenAI path pointed at a local provider."""
    return paperboy_env(
        redis_url,
        sqlite_path,
        llm_provider="openai",
        openai_api_key="sk-bench",
        openai_base_url=provider_url,
        openai_model="fake-model",
        **overrides,
    )


# Paperboy processes


def start_worker(lab: Lab, env: dict[str, str], name: str = "worker") -> Proc:
    return lab.spawn(name, [str(BIN / "python"), "-m", "paperboy_worker"], env)


def worker_ready(server: RedisServer, proc: Proc, db: int = 0, timeout: float = 30) -> None:
    """Wait until the worker announced itself (its heartbeat runs at the end of start-up)."""
    client = server.client(db)
    marker = f"-{proc.pid}-"

    def registered() -> bool:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited at start:\n{proc.log_tail()}")
        members: list[bytes] = client.zrange(keys.WORKERS, 0, -1)  # type: ignore[assignment]
        return any(marker in m.decode() for m in members)

    try:
        wait_for(registered, timeout, f"{proc.name} ready")
    finally:
        client.close()


def start_api(lab: Lab, env: dict[str, str]) -> tuple[Proc, str]:
    """`uvicorn paperboy_api.app:app` as shipped (Dockerfile, fly.toml), on 127.0.0.1."""
    port = free_port()
    argv = [str(BIN / "uvicorn"), "paperboy_api.app:app", "--host", "127.0.0.1", "--no-access-log"]
    argv += ["--http", "paperboy_api.protocol:Protocol"]
    proc = lab.spawn("api", [*argv, "--port", str(port)], env)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if not proc.alive():
            raise RuntimeError(f"api exited at start:\n{proc.log_tail()}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    wait_for(healthy, 30, "api ready", interval=0.05)
    return proc, url


# Bare arq


def start_bare_worker(
    lab: Lab, server: RedisServer, *, poll_delay: float, max_jobs: int = 10, db: int = 0
) -> Proc:
    """`arq bench.bare.WorkerSettings`: arq's defaults but the poll delay, no-op jobs."""
    env = base_env()
    env.update(
        {
            "BENCH_REDIS_PORT": str(server.port),
            "BENCH_REDIS_DB": str(db),
            "BENCH_POLL_DELAY": str(poll_delay),
            "BENCH_MAX_JOBS": str(max_jobs),
        }
    )
    proc = lab.spawn(
        f"bare-arq-{poll_delay:g}", [str(BIN / "arq"), "bench.bare.WorkerSettings"], env
    )
    client = server.client(db)

    def ready() -> bool:
        if not proc.alive():
            raise RuntimeError(f"bare worker exited at start:\n{proc.log_tail()}")
        return bool(client.exists(f"bench:bare:ready:{proc.pid}"))

    try:
        wait_for(ready, 30, "bare arq worker ready")
    finally:
        client.close()
    return proc


# Callback receiver


@dataclass
class Receiver:
    proc: Proc
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def counts(self) -> dict[str, int]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/count", timeout=5) as response:
            data: dict[str, int] = json.loads(response.read())
            return data

    def reset(self) -> None:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/reset", method="POST")
        with urllib.request.urlopen(request, timeout=5):
            pass


def start_receiver(lab: Lab) -> Receiver:
    port = free_port()
    argv = [sys.executable, "-m", "bench.receiver", "--port", str(port)]
    receiver = Receiver(lab.spawn("receiver", argv, base_env()), port)

    def answers() -> bool:
        with contextlib.suppress(OSError):
            return receiver.counts() is not None
        return False

    wait_for(answers, 15, "callback receiver ready", interval=0.05)
    return receiver


@dataclass
class Bench:
    """What every figure shares: the temporary lab, one private Redis, one callback receiver."""

    lab: Lab
    redis: RedisServer
    receiver: Receiver

    def sqlite_path(self, name: str) -> Path:
        return self.lab.path(f"{name}.db")


# Load generator

# Debian's wrk, pinned in scripts/install_system.sh; the figure refuses any other build, so a
# changed generator cannot pass for the same measurement.
WRK_VERSION = "debian/4.1.0-3+b2"

# wrk's Lua hooks: one POST with a fixed body and headers, and the summary as one JSON line.
_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = {body}
{headers}
done = function(summary, latency, requests)
  io.write(string.format(
    '\\n{{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "errors": %d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout))
end
"""


@dataclass
class WrkRun:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx/3xx answers, and connect, read, write and timeout errors
    cpu_seconds: float  # the generator's own user + system CPU


def wrk_version() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is missing: run `make install` (scripts/install_system.sh)")
    out = subprocess.run([found, "-v"], capture_output=True, text=True, check=False).stdout
    version = out.split()[1] if len(out.split()) > 1 else out
    if version != WRK_VERSION:
        raise RuntimeError(f"wrk {version} found, the bench is pinned to {WRK_VERSION}")
    return version


def run_wrk(
    lab: Lab, url: str, body: bytes, headers: dict[str, str], connections: int, seconds: int
) -> WrkRun:
    """POST `body` to `url` from `connections` keep-alive connections on one wrk thread."""
    script = lab.path(f"wrk-{os.urandom(6).hex()}.lua")
    header_lines = "\n".join(
        f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}" for name, value in headers.items()
    )
    script.write_text(_WRK_SCRIPT.format(body=_lua_string(body), headers=header_lines))
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url]
    log_path = script.with_suffix(".log")
    with log_path.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    # wait4 gives the child's own CPU as it is reaped: no sampling window to miss.
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    output = log_path.read_text()
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed ({process.returncode}): {output}")
    summary = json.loads(output.strip().splitlines()[-1])
    return WrkRun(
        requests=summary["requests"],
        seconds=summary["duration_us"] / 1e6,
        p50_ms=summary["p50_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        errors=summary["errors"],
        cpu_seconds=usage.ru_utime + usage.ru_stime,
    )


def _lua_string(raw: bytes) -> str:
    # A long bracket with a level no JSON body contains: no escaping to get wrong.
    return "[==[" + raw.decode() + "]==]"
