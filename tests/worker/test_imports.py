"""What an idle offline worker loads: not the provider's SDK, nor the Supabase client on SQLite.

Each costs memory a worker that never calls them should not pay (issue 13: the idle worker
must stay at or under 50 MiB). Checked in a fresh interpreter that runs the worker's real
startup and shutdown, since this test process has imported both already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT

STARTUP = """
import asyncio, json, sys
from paperboy_worker.worker import on_shutdown, on_startup
from shared import queue
from shared.settings import Settings

async def main():
    settings = Settings()
    ctx = {"settings": settings, "redis": await queue.open_pool(settings, retries=1)}
    await on_startup(ctx)
    await on_shutdown(ctx)
    await ctx["redis"].aclose()
    print(json.dumps({"writer": type(ctx["writer"]).__name__, "modules": sorted(sys.modules)}))

asyncio.run(main())
"""


def test_an_offline_worker_on_sqlite_loads_neither_openai_nor_supabase(
    tmp_path: Path, redis_url: str
) -> None:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "STATE_BACKEND": "sqlite",
        "SQLITE_PATH": str(tmp_path / "paperboy.sqlite"),
        "LLM_PROVIDER": "offline",
        "ORCHESTRATION_ENABLED": "false",
    }
    done = subprocess.run(
        [sys.executable, "-c", STARTUP],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["writer"] == "OfflineWriter"
    loaded = {name.split(".")[0] for name in seen["modules"]}
    assert "openai" not in loaded
    assert "supabase" not in loaded
    assert "postgrest" not in loaded
