"""The daily fan-out on real processes: triggered twice, twice at once, still one digest each."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.processes import Proc, Receiver, Stack, base_env
from tests.support import wait_until

pytestmark = pytest.mark.integration

DAY = "2026-11-22"
REMOVED = "2026-11-20T08:00:00+00:00"


def user(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def test_daily_run_creates_one_digest_and_one_callback_per_profile(
    redis_url: str,
    tmp_path: Path,
    processes: Callable[..., Proc],
    start_api: Callable[[dict[str, str]], Stack],
    receiver: Receiver,
) -> None:
    env = base_env(
        redis_url,
        tmp_path / "paperboy.db",
        daily_callback_url=receiver.url,
        daily_spread_seconds="0.02",
        worker_max_jobs="20",
    )
    stack = start_api(env)
    for index in range(25):
        profile = {
            "user_id": user(index),
            "name": f"Reader {index}",
            "goals": "retrieval-augmented generation and language model agents",
            "interests": "AI policy",
        }
        assert stack.client.post("/admin/profiles", json=profile).status_code == 200
    gone = {"user_id": user(99), "name": "Gone", "goals": "graphs"}
    stack.client.post("/admin/profiles", json=gone)
    assert stack.client.delete(f"/admin/profiles/{user(99)}").status_code == 204
    unsubscribed = {"user_id": user(98), "name": "Left", "goals": "graphs", "remove": REMOVED}
    assert stack.client.post("/admin/profiles", json=unsubscribed).status_code == 200

    def trigger() -> int:
        return stack.client.post("/admin/orchestration/run", json={"source_date": DAY}).status_code

    assert trigger() == 202
    processes("worker", env)
    processes("worker", env)
    with ThreadPoolExecutor(2) as pool:  # two runs at the same moment, one per worker
        assert list(pool.map(lambda _: trigger(), range(2))) == [202, 202]

    def all_completed() -> dict[str, object] | None:
        status = stack.client.get(f"/admin/orchestration/status/{DAY}").json()
        return status if status["by_status"]["completed"] == 25 else None

    status = wait_until(all_completed, timeout=90, interval=0.5)
    wait_until(lambda: len(receiver.deliveries) >= 25, timeout=30)

    assert status["digests"] == 25
    assert status["profiles"] == 25
    assert len(receiver.deliveries) == 25
    assert len({d.json["task_id"] for d in receiver.deliveries}) == 25
    listed = stack.client.get("/admin/tasks", params={"limit": "200"}).json()["items"]
    assert len(listed) == 25
    assert {item["user_id"] for item in listed} == {user(i) for i in range(25)}
    profiles = stack.client.get("/admin/profiles").json()
    assert len(profiles["items"]) == 27 and profiles["skipped"] == []
    assert sum(p["remove"] is not None for p in profiles["items"]) == 2
