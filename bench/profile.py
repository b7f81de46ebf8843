"""Where the time goes: py-spy profiles of the API under figure 1's load and of a worker under
figure 3's, and where an idle worker's memory goes (what its imports cost).

py-spy is a development tool, not a dependency: with none on PATH or in the venv the profiles are
skipped and the document says how to get them. The profiled runs are separate from the timed
ones (sampling pauses the process), so they explain the figures without changing them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import enqueue, overhead
from bench.servers import BIN, Bench, Proc, base_env, paperboy_env, start_api

RATE = 250  # samples per second
PROJECT = ("paperboy_api/", "paperboy_worker/", "shared/")
LIBRARIES = (  # (file prefix, category), first match wins
    ("logging/", "logging"),
    ("json/", "json"),
    ("pydantic", "pydantic"),
    ("arq/", "Redis (arq, redis-py)"),
    ("redis/", "Redis (arq, redis-py)"),
    ("httpx/", "HTTP client (httpx)"),
    ("httpcore/", "HTTP client (httpx)"),
    ("anyio/", "HTTP client (httpx)"),
    ("h11/", "HTTP server (uvicorn)"),
    ("httptools/", "HTTP server (uvicorn)"),
    ("uvicorn/", "HTTP server (uvicorn)"),
    ("uvloop/", "event loop (uvloop)"),
    ("starlette/", "Starlette"),
    ("jinja2/", "jinja2"),
    ("markupsafe/", "jinja2"),
    ("defusedxml/", "XML feed parsing"),
    ("xml/", "XML feed parsing"),
    ("uuid.py", "uuid"),
    ("datetime", "datetime"),
    ("concurrent/", "thread pool hand-off"),
    ("threading.py", "thread pool hand-off"),
    ("asyncio/", "event loop (asyncio)"),
    ("selectors.py", "event loop (asyncio)"),
)
IMPORTS = [
    "asyncio",
    "pydantic",
    "redis.asyncio",
    "arq",
    "httpx",
    "jinja2",
    "prometheus_client",
    "openai",
    "paperboy_worker.worker",
]


@dataclass
class Profile:
    what: str
    samples: int
    categories: list[tuple[str, float]]  # exclusive shares, largest first
    functions: list[tuple[str, float]]  # Paperboy functions, inclusive shares
    leaves: list[tuple[str, float]]  # where samples were taken (self time)
    executor_share: float  # of all samples, those on the store's executor thread (holding the GIL)


@dataclass
class Result:
    available: bool
    note: str = ""
    profiles: list[Profile] = field(default_factory=list)
    imports_mib: list[tuple[str, float]] = field(default_factory=list)


def _frame(raw: str) -> tuple[str, str]:
    """(function, file) of a py-spy frame `function (file:line)`."""
    match = re.match(r"^(.*) \((.*?)(?::\d+)?\)$", raw.strip())
    return (match.group(1), match.group(2)) if match else (raw.strip(), "")


def _project(file: str) -> bool:
    return file.startswith(PROJECT)


def _library(file: str) -> str | None:
    return next((name for prefix, name in LIBRARIES if prefix in file), None)


def _executor(frames: list[tuple[str, str]]) -> bool:
    return any(fn == "Thread._bootstrap" for fn, _ in frames[:3])


def _category(frames: list[tuple[str, str]]) -> str:
    """Under Paperboy's deepest frame: Paperboy itself, or the library it called into. Outside
    Paperboy's code: arq's own job handling, else the innermost library that is not asyncio."""
    deepest = max((i for i, (_, f) in enumerate(frames) if _project(f)), default=None)
    if deepest is not None:
        if deepest == len(frames) - 1:
            return "Paperboy's own code"
        for _, file in frames[deepest + 1 :]:
            if (name := _library(file)) is not None:
                return f"{name}, called by Paperboy"
        return "other libraries, called by Paperboy"
    if any(file.startswith("arq/") for _, file in frames):
        return "arq's job handling (poll, claim, finish), outside Paperboy's code"
    for _, file in reversed(frames):
        name = _library(file)
        if name is not None and name != "event loop (asyncio)":
            return name
    return "event loop (asyncio)"


def analyse(path: Path, what: str) -> Profile:
    """Shares of the event-loop thread's samples; the store's executor thread is counted apart."""
    categories: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    executor = total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        if _executor(frames):
            executor += n
            continue
        total += n
        categories[_category(frames)] += n
        fn, file = frames[-1]
        leaves[f"{fn} ({file})"] += n
        for name in {f"{fn} ({file})" for fn, file in frames if _project(file)}:
            functions[name] += n
    if total == 0:
        raise RuntimeError(f"py-spy recorded no samples for {what}")

    def shares(counter: Counter[str], top: int, floor: float = 0.0) -> list[tuple[str, float]]:
        return [(k, v / total) for k, v in counter.most_common(top) if v / total >= floor]

    return Profile(
        what,
        total,
        shares(categories, 30),
        shares(functions, 18, 0.01),
        shares(leaves, 12),
        executor / (executor + total),
    )


def _py_spy() -> str | None:
    local = BIN / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


class Spy:
    """`py-spy record` attached to one process until stopped."""

    def __init__(self, exe: str, proc: Proc, out: Path) -> None:
        self.out = out
        argv = [exe, "record", "--pid", str(proc.pid), "--rate", str(RATE), "--gil"]
        argv += ["--format", "raw"]
        self.popen = subprocess.Popen(
            [*argv, "--output", str(out), "--duration", "120"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
        try:
            _, err = self.popen.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.communicate(timeout=10)
            raise
        if not self.out.exists():
            raise RuntimeError(f"py-spy wrote no profile: {err.decode(errors='replace')[-300:]}")


async def _api(bench: Bench, exe: str) -> Profile:
    bench.redis.flush()
    env = paperboy_env(bench.redis.url(), bench.sqlite_path("profile-api"))
    api, url = start_api(bench.lab, env)
    out = bench.lab.path("profile-api.txt")
    spy = Spy(exe, api, out)
    try:
        await asyncio.sleep(0.5)
        for _ in range(2):
            await enqueue._api_level(bench.lab, url, bench.receiver.url, api.thread_cpu, 16)
    finally:
        with contextlib.suppress(Exception):
            spy.stop()
        bench.lab.stop(api)
    return analyse(out, "API: POST /generate-digest at concurrency 16")


async def _worker(bench: Bench, exe: str) -> Profile:
    out = bench.lab.path("profile-worker.txt")
    spies: list[Spy] = []

    def attach(proc: Proc) -> None:
        spies.append(Spy(exe, proc, out))

    try:
        await overhead._paperboy(bench, 600, "profile-worker", on_start=attach)
    finally:
        for spy in spies:
            with contextlib.suppress(Exception):
                spy.stop()
    return analyse(out, "Worker: 600 no-op digests, full lifecycle (figure 3)")


_IMPORT_PROBE = """
import importlib, json, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
out = [("interpreter", rss())]
for name in sys.argv[1:]:
    before = rss()
    importlib.import_module(name)
    out.append((name, rss() - before))
print(json.dumps(out))
"""


def imports_mib() -> list[tuple[str, float]]:
    """What each of the worker's heavy imports adds to a fresh interpreter's RSS, in order."""
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, *IMPORTS],
        env=base_env(),
        capture_output=True,
        timeout=60,
        check=True,
        cwd="/",
    )
    return [(name, float(mib)) for name, mib in json.loads(done.stdout)]


async def run(bench: Bench, results: dict[str, Any], log: Callable[[str], Any]) -> Result:
    result = Result(available=False)
    with contextlib.suppress(Exception):
        result.imports_mib = imports_mib()
    exe = _py_spy()
    if exe is None:
        result.note = "py-spy is not installed (`.venv/bin/pip install py-spy`), so no profiles."
        return result
    try:
        result.profiles.append(await _api(bench, exe))
        log("  profiled the API")
        result.profiles.append(await _worker(bench, exe))
        log("  profiled the worker")
        result.available = True
    except Exception as exc:  # a profile that cannot be taken must not lose the figures
        result.note = f"profiling failed: {exc}"
        log(f"  {result.note}")
    return result
