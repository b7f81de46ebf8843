"""`make run`: the whole stack on this machine, one digest end to end, then up until Ctrl-C.

Redis at REDIS_URL, or a local redis-server (append-only, data under ./var) when none answers;
the API on :8080, one worker, the SQLite store, the offline LLM and the bundled sample sources.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis

from shared.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
BIN = Path(sys.executable).parent
LOCAL_REDIS_PORT = 6390

PROFILE = {
    "user_info": {
        "name": "Ada Lovelace",
        "title": "Research engineer",
        "goals": "retrieval-augmented generation and LLM agents that use tools reliably",
    },
    "categories": ["cs.AI", "cs.LG", "cs.CL"],
    "top_n_articles": 5,
}


def redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def start_redis(children: list[subprocess.Popen[bytes]]) -> str:
    url = f"redis://127.0.0.1:{LOCAL_REDIS_PORT}/0"
    if redis_answers(url):
        return url
    server = shutil.which("redis-server")
    if server is None:
        sys.exit(
            "No Redis at REDIS_URL and no redis-server on PATH: install Redis or set REDIS_URL"
        )
    data = VAR / "redis"
    data.mkdir(parents=True, exist_ok=True)
    argv = [server, "--port", str(LOCAL_REDIS_PORT), "--bind", "127.0.0.1", "--dir", str(data)]
    argv += ["--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction"]
    children.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL))
    deadline = time.monotonic() + 10
    while not redis_answers(url):
        if time.monotonic() > deadline:
            sys.exit("redis-server did not start")
        time.sleep(0.1)
    print(f"started redis-server on :{LOCAL_REDIS_PORT} (append-only, data in {data})")
    return url


def wait_for(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    sys.exit(f"{url} did not answer within {timeout:.0f}s")


def generate(base: str, api_key: str) -> str:
    headers = {"X-API-Key": api_key}
    response = httpx.post(f"{base}/generate-digest", json=PROFILE, headers=headers, timeout=10)
    response.raise_for_status()
    task_id: str = response.json()["task_id"]
    print(f"task {task_id} accepted; status at {base}{response.json()['status_url']}")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = httpx.get(f"{base}/digest-status/{task_id}", headers=headers, timeout=10).json()
        if status["status"] in {"completed", "failed", "cancelled"}:
            break
        time.sleep(0.3)
    else:
        sys.exit("the digest did not finish within 120s")
    if status["status"] != "completed":
        sys.exit(f"the digest ended {status['status']}: {status['error']}")
    path = VAR / f"digest-{task_id}.html"
    path.write_text(status["result"])
    print(f"digest completed: {len(status['articles'])} papers")
    print(f"  HTML file: {path}")
    print(f"  in a browser: {base}/digests/{task_id} (send X-API-Key: {api_key})")
    return task_id


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--once", action="store_true", help="stop after the first digest")
    args = parser.parse_args()

    VAR.mkdir(exist_ok=True)
    children: list[subprocess.Popen[bytes]] = []
    try:
        settings = load_settings()  # REDIS_URL and API_KEY, from the environment or .env
        redis_url = settings.redis_url
        if not redis_answers(redis_url):
            redis_url = start_redis(children)
        api_key = settings.api_key.get_secret_value()
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "API_KEY": api_key,
            "STATE_BACKEND": "sqlite",
            "SQLITE_PATH": str(VAR / "paperboy.db"),
            "LLM_PROVIDER": "offline",
            "SOURCE_MODE": "sample",
            "CALLBACK_ALLOW_PRIVATE_NETWORKS": "true",
        }
        base = f"http://127.0.0.1:{args.port}"
        children.append(
            subprocess.Popen(
                [
                    str(BIN / "uvicorn"),
                    "paperboy_api.app:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(args.port),
                ],
                env=env,
                cwd=ROOT,
            )
        )
        children.append(
            subprocess.Popen([str(BIN / "python"), "-m", "paperboy_worker"], env=env, cwd=ROOT)
        )
        wait_for(f"{base}/health", 30)
        print(f"API on {base} (API key {api_key}), one worker, Redis at {redis_url}")
        generate(base, api_key)
        if not args.once:
            print("stack is up; Ctrl-C to stop")
            signal.signal(signal.SIGTERM, _interrupt)
            while True:
                signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        for child in reversed(children):
            child.terminate()
        for child in reversed(children):
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()


if __name__ == "__main__":
    main()
