"""End to end with the production store: API and worker processes on a real PostgREST."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from paperboy_worker.llm.prompts import ANALYSIS
from shared import keys
from tests.fake_newsapi import FakeNewsAPI
from tests.fake_openai import FakeOpenAI
from tests.postgrest_bed import PostgrestBed
from tests.processes import Proc, Stack, base_env
from tests.receiver import Receiver
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
    row = read_task(empty_postgrest, task_id, "status,callback_status,attempt")
    assert (row["status"], row["callback_status"], row["attempt"]) == ("completed", "delivered", 1)
    assert not sqlite_path.exists()


def read_task(bed: PostgrestBed, task_id: str, select: str = "*") -> dict[str, Any]:
    headers = {"apikey": bed.service_key, "Authorization": f"Bearer {bed.service_key}"}
    answer = httpx.get(
        f"{bed.url}/rest/v1/{keys.DIGEST_TASKS}",
        params={"task_id": f"eq.{task_id}", "select": select},
        headers=headers,
    )
    answer.raise_for_status()
    [row] = answer.json()
    return row  # type: ignore[no-any-return]


# NewsAPI passes on whatever its publishers wrote, NULs included.
NEWS_WITH_NUL = [
    {
        "source": {"id": None, "name": "Wire\u0000 Daily"},
        "author": "Ada\u0000 Reporter",
        "title": f"Retrieval-augmented generation\u0000 for question answering, part {n}",
        "description": "Language models\u0000 answer questions from retrieved documents.",
        "url": f"https://news.example/rag-{n}",
        "publishedAt": "2026-11-22T08:00:00Z",
        "content": "Retrieval\u0000-augmented generation grounds answers. [+1200 chars]",
    }
    for n in range(1, 4)
]


@pytest.fixture
def newsapi() -> Iterator[FakeNewsAPI]:
    with FakeNewsAPI(NEWS_WITH_NUL) as fake:
        yield fake


@pytest.fixture
def nul_provider() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(nul=True) as fake:
        yield fake


def test_a_digest_whose_sources_and_model_output_carry_nuls_completes_on_supabase(
    redis_url: str,
    tmp_path: Path,
    empty_postgrest: PostgrestBed,
    processes: Callable[..., Proc],
    start_api: Callable[[dict[str, str]], Stack],
    newsapi: FakeNewsAPI,
    nul_provider: FakeOpenAI,
) -> None:
    env = base_env(
        redis_url,
        tmp_path / "unused.db",
        state_backend="supabase",
        supabase_url=empty_postgrest.url,
        supabase_key=empty_postgrest.service_key,
        news_enabled="true",
        newsapi_key="test-news-key",
        newsapi_base_url=newsapi.url,
        llm_provider="openai",
        openai_api_key="sk-test",
        openai_base_url=nul_provider.url,
        openai_model="fake-model",
    )
    stack = start_api(env)
    processes("worker", env)

    response = stack.post_digest(digest_body(top_n_articles=6))
    task_id = response.json()["task_id"]
    status = stack.wait_status(task_id, {"completed", "failed"}, timeout=60)

    assert status["status"] == "completed", status
    assert newsapi.queries and nul_provider.completions_for(ANALYSIS)
    row = read_task(empty_postgrest, task_id)
    stored = json.dumps(row)
    assert "\\u0000" not in stored and "\x00" not in stored
    articles = row["articles"]
    news = [a for a in articles if a["item"]["kind"] == "news"]
    assert news, [a["item"]["title"] for a in articles]
    assert news[0]["item"]["title"].startswith("Retrieval-augmented generation for question")
    assert news[0]["item"]["source"] == "Wire Daily"
    assert all(a["analysis"]["summary"].startswith("Summary of ") for a in articles)
    assert not status["degraded"]
