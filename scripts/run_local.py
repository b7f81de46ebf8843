"""`make run`: the whole stack on this machine, one digest end to end, then up until Ctrl-C.

Redis at REDIS_URL, or a local redis-server (append-only, data under ./var) when none answers;
the API on :8080, one worker, the SQLite store, the offline LLM and the bundled sample sources.
With no EMAIL_PROVIDER, a local SMTP sink takes the mail and keeps each message in var/mail/.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import redis
from aiosmtpd.controller import Controller
from mail_sink import start_sink  # run as a script, scripts/ is on the path

from shared.settings import ApiSettings, load_settings

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
SECRETS = VAR / "secrets"
BIN = Path(sys.executable).parent
MAIL = VAR / "mail"
LOCAL_SENDER = "Paperboy <paperboy@localhost>"
LOCAL_REDIS_PORT = 6390
# The API's serving options, as in fly.toml and the Dockerfile: the protocol caps request heads.
API_OPTIONS = ["--http", "paperboy_api.protocol:Protocol"]

PROFILE = {
    "user_info": {
        "name": "Ada Lovelace",
        "title": "Research engineer",
        "goals": "retrieval-augmented generation and LLM agents that use tools reliably",
    },
    "categories": ["cs.AI", "cs.LG", "cs.CL"],
    "top_n_articles": 5,
}


# The subscriber `make run` emails a daily digest to, through the local sink.
DEMO_SUBSCRIBER = {
    "user_id": "00000000-0000-4000-8000-00000000d3e0",
    "email": "ada@localhost",
    "name": "Ada Lovelace",
    "title": "Research engineer",
    "goals": "retrieval-augmented generation and LLM agents that use tools reliably",
    "interests": "AI policy",
}
FINAL = {"sent", "failed", "ambiguous"}


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_mail_sink(provider: str) -> tuple[Controller | None, dict[str, str]]:
    """With no provider configured, a sink on a free port and the settings that point at it."""
    if provider != "none":
        return None, {}
    port = free_port()
    sink = start_sink(MAIL, port)
    print(f"no EMAIL_PROVIDER: SMTP sink on 127.0.0.1:{port} keeps every message in {MAIL}/")
    return sink, {
        "EMAIL_PROVIDER": "smtp",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port),
        "SMTP_STARTTLS": "false",
        "EMAIL_FROM": LOCAL_SENDER,
    }


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


def email_demo(base: str, api_key: str) -> None:
    """A demo subscriber and a daily run for yesterday, so the digest arrives as an email in the
    sink; a second `make run` finds that day sent already and sends nothing."""
    headers = {"X-API-Key": api_key}
    before = set(MAIL.glob("*.eml"))
    httpx.post(f"{base}/admin/profiles", json=DEMO_SUBSCRIBER, headers=headers, timeout=10)
    run = httpx.post(f"{base}/admin/orchestration/run", headers=headers, timeout=10)
    run.raise_for_status()
    day = run.json()["source_date"]
    print(f"daily run for {day} queued for the demo subscriber {DEMO_SUBSCRIBER['email']}")
    delivery = _wait_for_delivery(base, headers, day)
    if delivery["state"] != "sent":
        sys.exit(f"the demo email ended {delivery['state']}: {delivery['error']}")
    new = sorted(set(MAIL.glob("*.eml")) - before)
    if not new:
        print(f"  the demo email for {day} was sent by an earlier run: see {MAIL}/")
        return
    print("  the digest as an email, as the subscriber gets it:")
    print(f"  message: {new[-1]}")
    if new[-1].with_suffix(".html").exists():
        print(f"  open in a browser: {new[-1].with_suffix('.html')}")


def _wait_for_delivery(base: str, headers: dict[str, str], day: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    url = f"{base}/admin/orchestration/status/{day}"
    while time.monotonic() < deadline:
        status = httpx.get(url, headers=headers, timeout=10).json()
        for delivery in status.get("deliveries", []):
            if delivery["user_id"] == DEMO_SUBSCRIBER["user_id"] and delivery["state"] in FINAL:
                return delivery  # type: ignore[no-any-return]
        time.sleep(0.3)
    sys.exit("the demo email was not sent within 120s")


def api_settings() -> ApiSettings:
    """API_KEY and SESSION_SECRET from the environment or .env; without them, the ones kept in
    ./var/secrets (read as pydantic-settings secret files), made on first use."""
    SECRETS.mkdir(parents=True, exist_ok=True)
    for name in ("api_key", "session_secret"):
        path = SECRETS / name
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(32))
    return load_settings(ApiSettings, _secrets_dir=SECRETS)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--once", action="store_true", help="stop after the first digest")
    args = parser.parse_args()

    VAR.mkdir(exist_ok=True)
    children: list[subprocess.Popen[bytes]] = []
    sink: Controller | None = None
    try:
        settings = api_settings()
        redis_url = settings.redis_url
        if not redis_answers(redis_url):
            redis_url = start_redis(children)
        api_key = settings.api_key.get_secret_value()
        sink, mail_env = start_mail_sink(settings.email_provider)
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "API_KEY": api_key,
            "SESSION_SECRET": settings.session_secret.get_secret_value(),
            "STATE_BACKEND": "sqlite",
            "SQLITE_PATH": str(VAR / "paperboy.db"),
            "LLM_PROVIDER": "offline",
            "SOURCE_MODE": "sample",
            "CALLBACK_ALLOW_PRIVATE_NETWORKS": "true",
            **mail_env,
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
                    *API_OPTIONS,
                ],
                env=env,
                cwd=ROOT,
            )
        )
        children.append(
            subprocess.Popen([str(BIN / "python"), "-m", "paperboy_worker"], env=env, cwd=ROOT)
        )
        wait_for(f"{base}/health", 30)
        print(f"API on {base}, one worker, Redis at {redis_url}")
        print(f"API key: {api_key} (kept in {SECRETS / 'api_key'} unless API_KEY is set)")
        generate(base, api_key)
        if sink is not None:
            email_demo(base, api_key)
            print(f"  mail sent by the stack: {MAIL}/ (.eml as received, .html to open)")
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
        if sink is not None:  # after the worker, which may be sending as it stops
            sink.stop()


if __name__ == "__main__":
    main()
