"""Sources are fetched once per (date, category) and shared by fetch tasks and digests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.processes import FlakyArxiv, Proc, Receiver, Stack, base_env
from tests.support import digest_body, wait_until

pytestmark = pytest.mark.integration

DAY = "2026-11-22"


def test_fetch_tasks_and_digests_share_one_fetch_per_category(
    redis_url: str,
    tmp_path: Path,
    processes: Callable[..., Proc],
    start_api: Callable[[dict[str, str]], Stack],
    receiver: Receiver,
) -> None:
    with FlakyArxiv(failures=0) as arxiv:
        env = base_env(
            redis_url,
            tmp_path / "paperboy.db",
            source_mode="live",
            arxiv_api_url=arxiv.url,
            arxiv_page_delay_seconds="0",
        )
        stack = start_api(env)
        processes("worker", env)
        processes("worker", env)
        fetch = {"source_date": DAY, "callback_url": receiver.url, "categories": ["cs.AI", "cs.LG"]}
        fetch_ids = [
            stack.client.post("/fetch-sources", json=fetch).json()["task_id"] for _ in range(2)
        ]
        body = digest_body(
            source_date=DAY, categories=["cs.AI", "cs.LG"], callback_url=receiver.url
        )
        digest_ids = [stack.post_digest(body).json()["task_id"] for _ in range(3)]

        for task_id in digest_ids:
            assert stack.wait_status(task_id, {"completed", "failed"})["status"] == "completed"
        statuses = [
            wait_until(
                lambda t=task_id: (
                    (s := stack.client.get(f"/fetch-status/{t}").json())["status"]
                    in {"completed", "failed"}
                    and s
                ),
                timeout=30,
            )
            for task_id in fetch_ids
        ]
        wait_until(lambda: len(receiver.deliveries) == 5, timeout=20)

    assert len(arxiv.request_times) == 2
    for status in statuses:
        assert status["status"] == "completed"
        assert status["result"]["total_count"] == 60
        assert status["result"]["source_date"] == DAY
    fetch_callbacks = [d.json for d in receiver.deliveries if d.json["task_id"] in fetch_ids]
    assert len(fetch_callbacks) == 2
    assert all(c["result"]["arxiv_count"] == 60 for c in fetch_callbacks)
    assert stack.client.get("/fetch-status/unknown").status_code == 404
    bad = stack.client.post("/fetch-sources", json={"source_date": "2999-01-01"})
    assert bad.status_code == 422
