"""End to end on real processes: uvicorn API, arq worker, Redis, SQLite, a callback receiver."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.processes import FlakyArxiv, Proc, Receiver, Stack, base_env
from tests.support import SIGNING_SECRET, digest_body, wait_until

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parents[2] / "paperboy_worker" / "samples" / "arxiv_sample.xml"


def verify_signature(delivery_headers: dict[str, str], body: bytes) -> bool:
    timestamp = delivery_headers["X-Paperboy-Timestamp"]
    expected = hmac.new(SIGNING_SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(
        delivery_headers["X-Paperboy-Signature"], f"sha256={expected.hexdigest()}"
    )


@pytest.fixture
def stack(
    redis_url: str,
    tmp_path: Path,
    processes: Callable[..., Proc],
    start_api: Callable[[dict[str, str]], Stack],
) -> Stack:
    env = base_env(redis_url, tmp_path / "paperboy.db", stage_delay_seconds="0.2")
    api = start_api(env)
    processes("worker", env)
    return api


def test_digest_completes_with_one_signed_callback(stack: Stack, receiver: Receiver) -> None:
    started = time.monotonic()
    response = stack.post_digest(digest_body(callback_url=receiver.url))
    accepted_in = time.monotonic() - started

    assert response.status_code == 202
    assert accepted_in < 1.0
    body = response.json()
    task_id = body["task_id"]
    assert body["status"] == "pending"
    assert body["status_url"] == f"/digest-status/{task_id}"

    seen = set()

    def done() -> bool:
        status = stack.status(task_id)
        seen.add(status["status"])
        return status["status"] in {"completed", "failed"}

    wait_until(done, timeout=30, interval=0.02)
    assert {"pending", "processing", "completed"} >= seen
    assert "processing" in seen

    status = stack.status(task_id)
    assert status["status"] == "completed", status
    assert status["progress"] == 1.0
    assert status["attempts"] == 1
    assert "<html" in status["result"].lower()
    # A profile about one topic: the digest's picks are the sample's papers on it.
    titles = [a["item"]["title"] for a in status["articles"]]
    assert len(titles) == 3
    assert all("retrieval" in t.lower() or "rag" in t.lower() for t in titles), titles

    html = stack.client.get(f"/digests/{task_id}")
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")

    wait_until(lambda: receiver.for_task(task_id), timeout=15)
    wait_until(lambda: stack.status(task_id)["callback_status"] == "delivered", timeout=10)
    deliveries = receiver.for_task(task_id)
    assert len(deliveries) == 1
    delivery = deliveries[0]
    assert verify_signature(delivery.headers, delivery.body)
    assert delivery.json["status"] == "completed"
    assert delivery.json["result"] == status["result"]
    assert delivery.json["error"] is None
    assert set(delivery.json) == {"task_id", "status", "result", "error", "timestamp"}
    assert delivery.headers["X-Paperboy-Delivery"]


def test_idempotency_key_gives_one_task_and_one_run(stack: Stack, receiver: Receiver) -> None:
    body = digest_body(callback_url=receiver.url)

    first = stack.post_digest(body, **{"Idempotency-Key": "daily-ada-1"})
    second = stack.post_digest(body, **{"Idempotency-Key": "daily-ada-1"})
    other = stack.post_digest({**body, "top_n_articles": 4}, **{"Idempotency-Key": "daily-ada-1"})

    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json()["task_id"] == first.json()["task_id"]
    assert other.status_code == 409

    task_id = first.json()["task_id"]
    status = stack.wait_status(task_id, {"completed", "failed"})
    assert status["status"] == "completed"
    assert status["attempts"] == 1
    wait_until(lambda: receiver.for_task(task_id), timeout=15)
    assert len(receiver.deliveries) == 1


def test_permanent_failure_fails_at_once_with_one_callback(
    stack: Stack, receiver: Receiver
) -> None:
    # The bundled sample has no high-energy physics: nothing to build a digest from.
    response = stack.post_digest(digest_body(callback_url=receiver.url, categories=["hep-th"]))
    task_id = response.json()["task_id"]

    status = stack.wait_status(task_id, {"completed", "failed"})

    assert status["status"] == "failed"
    assert status["error_code"] == "no_sources"
    assert status["attempts"] == 1
    assert status["result"] is None
    wait_until(lambda: receiver.for_task(task_id), timeout=15)
    wait_until(lambda: stack.status(task_id)["callback_status"] == "delivered", timeout=10)
    deliveries = receiver.for_task(task_id)
    assert len(deliveries) == 1
    assert deliveries[0].json["status"] == "failed"
    assert "hep-th" in deliveries[0].json["error"]
    assert stack.client.get(f"/digests/{task_id}").status_code == 404


def test_transient_failure_retries_with_growing_delays(
    redis_url: str,
    tmp_path: Path,
    processes: Callable[..., Proc],
    start_api: Callable[[dict[str, str]], Stack],
    receiver: Receiver,
) -> None:
    with FlakyArxiv(failures=3) as arxiv:
        env = base_env(
            redis_url,
            tmp_path / "paperboy.db",
            source_mode="live",
            arxiv_api_url=arxiv.url,
            retry_backoff_seconds="[0.4, 1.0, 2.0]",
            arxiv_page_delay_seconds="0",
        )
        stack = start_api(env)
        processes("worker", env)

        body = digest_body(callback_url=receiver.url, categories=["cs.AI"])
        task_id = stack.post_digest(body).json()["task_id"]
        status = stack.wait_status(task_id, {"completed", "failed"}, timeout=45)

    assert status["status"] == "completed", status
    assert status["failures"] == 3
    assert status["attempts"] == 4
    gaps = [b - a for a, b in zip(arxiv.request_times, arxiv.request_times[1:], strict=False)]
    assert len(gaps) == 3
    assert gaps[0] < gaps[2]
    assert gaps[2] >= 1.0
    wait_until(lambda: receiver.for_task(task_id), timeout=15)
    assert [d.json["status"] for d in receiver.for_task(task_id)] == ["completed"]
