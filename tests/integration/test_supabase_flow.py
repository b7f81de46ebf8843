"""End to end with the production store: API and worker processes on a real PostgREST."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from shared import keys
from tests.postgrest_bed import PostgrestBed
from tests.processes import Proc, Receiver, Stack, base_env
from tests.support import digest_body, wait_until

pytestmark = pytest.mark.integration


def test_a_digest_completes_with_its_callback_on_supabase(
    redis_url: str,
    tmp_path: Path,
    empty_postgrest: PostgrestBed,
    processes: Callable[..., Proc],
    start_api: Callable[[dict[str, str]], Stack],
    receiver: Receiver,
) -> None:
    sqlite_path = tmp_path / "unused.db"
    env = base_env(
        redis_url,
        sqlite_path,
        state_backend="supabase",
        supabase_url=empty_postgrest.url,
        supabase_key=empty_postgrest.service_key,
    )
    stack = start_api(env)
    processes("worker", env)

    response = stack.post_digest(digest_body(callback_url=receiver.url))
    assert response.status_code == 202
    task_id = response.json()["task_id"]
    status = stack.wait_status(task_id, {"completed", "failed"})

    assert status["status"] == "completed", status
    assert "<html" in status["result"].lower()
    wait_until(lambda: stack.status(task_id)["callback_status"] == "delivered", timeout=15)
    [delivery] = receiver.for_task(task_id)
    assert delivery.json["status"] == "completed"
    # The row is in PostgreSQL, read back past both processes, and SQLite was never opened.
    row = read_task(empty_postgrest, task_id)
    assert (row["status"], row["callback_status"], row["attempt"]) == ("completed", "delivered", 1)
    assert not sqlite_path.exists()


def read_task(bed: PostgrestBed, task_id: str) -> dict[str, object]:
    headers = {"apikey": bed.service_key, "Authorization": f"Bearer {bed.service_key}"}
    answer = httpx.get(
        f"{bed.url}/rest/v1/{keys.DIGEST_TASKS}",
        params={"task_id": f"eq.{task_id}", "select": "status,callback_status,attempt"},
        headers=headers,
    )
    answer.raise_for_status()
    [row] = answer.json()
    return row  # type: ignore[no-any-return]
