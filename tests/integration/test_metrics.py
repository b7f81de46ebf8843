"""`/metrics` moves when digests run: counters and histograms summed across processes."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.processes import Proc, Receiver, Stack, base_env
from tests.support import API_KEY, digest_body, wait_until

pytestmark = pytest.mark.integration


def sample(text: str, series: str) -> float:
    """The value of one series line, e.g. `paperboy_digests_finished_total{status="completed"}`."""
    pattern = re.escape(series) + r" ([0-9.e+-]+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_metrics_move_when_digests_run(
    redis_url: str,
    tmp_path: Path,
    processes: Callable[..., Proc],
    start_api: Callable[[dict[str, str]], Stack],
    receiver: Receiver,
) -> None:
    env = base_env(redis_url, tmp_path / "paperboy.db")
    stack = start_api(env)
    processes("worker", env)
    assert stack.client.get("/metrics", headers={"X-API-Key": ""}).status_code == 401

    before = stack.client.get("/metrics").text
    ok = stack.post_digest(digest_body(callback_url=receiver.url)).json()["task_id"]
    bad = stack.post_digest(digest_body(categories=["hep-th"])).json()["task_id"]
    for task_id in (ok, bad):
        stack.wait_status(task_id, {"completed", "failed"})
    wait_until(lambda: receiver.for_task(ok), timeout=15)
    bearer = {"Authorization": f"Bearer {API_KEY}", "X-API-Key": ""}
    after = wait_until(
        lambda: (
            (text := stack.client.get("/metrics", headers=bearer).text)
            and sample(text, 'paperboy_callback_deliveries_total{outcome="delivered"}') >= 1
            and text
        ),
        timeout=10,
    )

    completed = 'paperboy_digests_finished_total{status="completed"}'
    failed = 'paperboy_digest_failures_total{error_code="no_sources"}'
    assert sample(after, completed) == sample(before, completed) + 1
    assert sample(after, failed) == sample(before, failed) + 1
    assert sample(after, "paperboy_digest_duration_seconds_count") >= 2
    assert sample(after, 'paperboy_stage_duration_seconds_count{stage="rank"}') >= 1
    assert sample(after, 'paperboy_stage_duration_seconds_bucket{le="+Inf",stage="render"}') >= 1
    assert sample(after, "paperboy_pickup_latency_seconds_count") >= 2
    assert sample(after, "paperboy_workers_live") == 1
    assert "paperboy_queue_depth" in after
    assert "# TYPE paperboy_digest_duration_seconds histogram" in after
