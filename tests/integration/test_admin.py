"""The operator API on real processes: lists, queue summary, cancel and retry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.processes import FlakyArxiv, Proc, Receiver, Stack, base_env
from tests.support import digest_body, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    return base_env(
        redis_url,
        tmp_path / "paperboy.db",
        stage_delay_seconds="0.5",
        heartbeat_seconds="1",
        lease_seconds="4",
        reaper_interval_seconds="1",
    )


def test_queue_summary_and_pages_without_a_worker(
    env: dict[str, str], start_api: Callable[[dict[str, str]], Stack]
) -> None:
    stack = start_api(env)
    posted = [stack.post_digest(digest_body()).json()["task_id"] for _ in range(5)]

    queue = stack.client.get("/admin/queue").json()
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params = {"status": "pending", "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = stack.client.get("/admin/tasks", params=params).json()
        seen += [item["task_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert queue["queued"] == 5
    assert queue["running"] == 0
    assert queue["oldest_queued_age_s"] >= 0
    assert queue["workers"] == []
    assert seen == list(reversed(posted))
    bad = stack.client.get("/admin/tasks", params={"status": "lost"})
    assert bad.status_code == 422


def test_cancel_a_pending_and_a_running_task(
    env: dict[str, str],
    start_api: Callable[[dict[str, str]], Stack],
    processes: Callable[..., Proc],
    receiver: Receiver,
) -> None:
    stack = start_api(env)
    pending = stack.post_digest(digest_body(callback_url=receiver.url)).json()["task_id"]
    cancelled = stack.client.post(f"/admin/tasks/{pending}/cancel")
    assert cancelled.status_code == 202
    assert cancelled.json()["status"] == "cancelled"

    processes("worker", env)
    running = stack.post_digest(digest_body(callback_url=receiver.url)).json()["task_id"]
    stack.wait_status(running, {"processing"})
    assert stack.client.post(f"/admin/tasks/{running}/cancel").status_code == 202

    status = stack.wait_status(running, {"completed", "failed", "cancelled"})
    assert status["status"] == "cancelled"
    for task_id in (pending, running):
        wait_until(lambda t=task_id: receiver.for_task(t), timeout=15)
        assert [d.json["status"] for d in receiver.for_task(task_id)] == ["cancelled"]
    again = stack.client.post(f"/admin/tasks/{running}/cancel")
    assert again.status_code == 409
    assert stack.client.post("/admin/tasks/unknown/cancel").status_code == 404


def test_a_failed_task_is_retried_under_the_same_id(
    env: dict[str, str],
    start_api: Callable[[dict[str, str]], Stack],
    processes: Callable[..., Proc],
    receiver: Receiver,
) -> None:
    with FlakyArxiv(failures=1) as arxiv:
        env = {**env, "SOURCE_MODE": "live", "ARXIV_API_URL": arxiv.url, "DIGEST_MAX_TRIES": "1"}
        stack = start_api(env)
        processes("worker", env)
        task_id = stack.post_digest(digest_body(callback_url=receiver.url)).json()["task_id"]
        failed = stack.wait_status(task_id, {"completed", "failed"})
        wait_until(lambda: stack.status(task_id)["callback_status"] == "delivered", timeout=15)
        dead = stack.client.get("/admin/tasks", params={"status": "failed"}).json()["items"]

        assert stack.client.post(f"/admin/tasks/{task_id}/retry").status_code == 202
        done = stack.wait_status(task_id, {"completed", "failed"})

    assert failed["status"] == "failed"
    assert failed["error_code"] == "source_unavailable"
    assert [item["task_id"] for item in dead] == [task_id]
    assert done["status"] == "completed"
    assert done["attempts"] == 2
    wait_until(lambda: len(receiver.for_task(task_id)) == 2, timeout=15)
    assert [d.json["status"] for d in receiver.for_task(task_id)] == ["failed", "completed"]
    assert stack.client.post(f"/admin/tasks/{task_id}/retry").status_code == 409
