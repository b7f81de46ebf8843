"""The LLM path on real processes against a local OpenAI-compatible server."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from paperboy_worker.llm.prompts import ANALYSIS, HIGHLIGHTS, RANKING
from tests.fake_openai import FakeOpenAI
from tests.processes import FAST_LEASES, Proc, Receiver, Stack, base_env, holder
from tests.support import digest_body, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def provider() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(rpm=60, window=60) as fake:
        yield fake


def llm_env(
    redis_url: str, tmp_path: Path, provider: FakeOpenAI, **overrides: str
) -> dict[str, str]:
    return base_env(
        redis_url,
        tmp_path / "paperboy.db",
        llm_provider="openai",
        openai_api_key="sk-test",
        openai_base_url=provider.url,
        openai_model="fake-model",
        **overrides,
    )


def test_ten_digests_on_two_workers_stay_under_the_providers_limit(
    redis_url: str,
    tmp_path: Path,
    processes: Callable[..., Proc],
    start_api: Callable[[dict[str, str]], Stack],
    provider: FakeOpenAI,
) -> None:
    # Six calls a digest (rank, four analyses, highlights): 60 calls for ten digests. The
    # limiter runs at the provider's own 60 a minute, with no margin.
    env = llm_env(redis_url, tmp_path, provider, llm_rpm="60")
    stack = start_api(env)
    processes("worker", env)
    processes("worker", env)

    task_ids = [
        stack.post_digest(digest_body(top_n_articles=4)).json()["task_id"] for _ in range(10)
    ]
    statuses = [stack.wait_status(t, {"completed", "failed"}, timeout=150) for t in task_ids]

    assert [s["status"] for s in statuses] == ["completed"] * 10
    assert provider.refused == 0
    assert provider.completions == 60
    assert all(not s["degraded"] for s in statuses)
    for status in statuses:
        assert status["usage"]["llm_requests"] == 6
        assert status["usage"]["prompt_tokens"] > 0
        assert status["usage"]["completion_tokens"] > 0
        assert status["articles"][0]["analysis"]["summary"]


def test_a_resumed_digest_pays_only_for_the_analyses_it_had_not_finished(
    redis_url: str,
    tmp_path: Path,
    processes: Callable[..., Proc],
    start_api: Callable[[dict[str, str]], Stack],
    provider: FakeOpenAI,
) -> None:
    provider.latency = 0.5
    n = 5
    env = llm_env(redis_url, tmp_path, provider, llm_analysis_concurrency="1", **FAST_LEASES)
    stack = start_api(env)
    workers = [processes("worker", env), processes("worker", env)]
    task_id = stack.post_digest(digest_body(top_n_articles=n)).json()["task_id"]

    victim = holder(stack, task_id, workers)
    progress = wait_until(
        lambda: (m := stack.status(task_id)["message"]).startswith("Analysed 2 of") and m,
        timeout=30,
        interval=0.01,
    )
    victim.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    k = int(progress.split()[1])
    status = stack.wait_status(task_id, {"completed", "failed"}, timeout=60)

    def after_kill(schema: str) -> int:
        return sum(1 for r in provider.completions_for(schema) if r.at > killed_at)

    assert status["status"] == "completed"
    assert status["interruptions"] == 1
    assert after_kill(RANKING) == 0
    assert after_kill(ANALYSIS) == n - k
    assert after_kill(HIGHLIGHTS) == 1
    assert len(provider.completions_for(RANKING)) == 1
    # What the task recorded: rank, n analyses, highlights; an answer lost with the killed
    # worker was paid for but could not be recorded.
    assert status["usage"]["llm_requests"] == n + 2


def test_invalid_model_output_falls_back_and_marks_the_digest_degraded(
    redis_url: str,
    tmp_path: Path,
    processes: Callable[..., Proc],
    start_api: Callable[[dict[str, str]], Stack],
    provider: FakeOpenAI,
    receiver: Receiver,
) -> None:
    env = llm_env(redis_url, tmp_path, provider)
    stack = start_api(env)
    processes("worker", env)
    provider.fail_next("invalid_json")

    task_id = stack.post_digest(digest_body(callback_url=receiver.url)).json()["task_id"]
    status = stack.wait_status(task_id, {"completed", "failed"})

    assert status["status"] == "completed"
    assert status["degraded"] is True
    assert len(status["articles"]) == 3
