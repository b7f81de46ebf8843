"""Helpers the tests share: constants, polling, request bodies."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REDIS_HOST = os.environ.get("TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("TEST_REDIS_PORT", "6379"))
REDIS_DB = int(os.environ.get("TEST_REDIS_DB", "13"))  # never 0: keep out of anyone's data
API_KEY = "test-key-0123456789"
SESSION_SECRET = "test-session-secret-0123456789abcdef"
# How the shipped commands serve the API (fly.toml, Dockerfile, Makefile, scripts/run_local.py).
API_OPTIONS = ("--http", "paperboy_api.protocol:Protocol")
SIGNING_SECRET = "test-signing-secret"
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll `check` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


async def wait_until_async(
    check: Callable[[], Awaitable[Any]], within: float, interval: float = 0.01
) -> Any:
    """`wait_until` for a check that awaits, without blocking the event loop it shares."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(interval)


def digest_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user_info": {
            "name": "Ada Researcher",
            "title": "ML engineer",
            "goals": "retrieval-augmented generation for question answering with language models",
        },
        "source_date": "2026-11-22",
        "top_n_articles": 3,
    }
    body.update(overrides)
    return body
