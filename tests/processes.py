"""The API and worker processes the integration tests run, and the environment they get."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support import API_KEY, SESSION_SECRET, SIGNING_SECRET, wait_until


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


# Leases short enough to keep the suite quick; the SIGKILL test uses the shipped defaults.
FAST_LEASES = {
    "lease_seconds": "4",
    "heartbeat_seconds": "1",
    "reaper_interval_seconds": "1",
    "reconcile_interval_seconds": "2",
    "reconcile_grace_seconds": "1",
}


def holder(stack: Stack, task_id: str, workers: list[Proc]) -> Proc:
    """The worker process running the task now."""

    def find() -> Proc | None:
        status = stack.status(task_id)
        if status["status"] != "processing" or not status["worker_id"]:
            return None
        pid = int(status["worker_id"].split("-")[-2])
        return next((w for w in workers if w.process.pid == pid), None)

    return wait_until(find, timeout=20)  # type: ignore[no-any-return]
