"""One digest attempt in-process: fakeredis, a temporary SQLite store, the LLM behind respx."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import httpx
import pytest
import respx
from pydantic import SecretStr

from paperboy_worker.context import WorkerContext
from paperboy_worker.llm import LLMWriter, llm_client
from paperboy_worker.pipeline.run import Attempt
from shared.errors import PermanentError
from shared.metrics import Metrics
from shared.models import DigestTask
from shared.ratelimit import Ticket
from shared.settings import Settings
from shared.store import open_backend
from shared.tasks import TaskRepository
from tests.support import digest_body

BASE_URL = "http://llm.test/v1"
MODEL = "gpt-4o-mini"
USAGE = (1000, 200)


class OpenLimiter:
    """Admits every request at once."""

    async def acquire(self, tokens: int, *, max_wait: float | None = None) -> Ticket:
        return Ticket("t", tokens, time.time(), 0.0)

    async def settle(self, ticket: Ticket, actual_tokens: int | None = None) -> None:
        pass

    async def hold(self, seconds: float) -> float:
        return time.time() + seconds


def settings(tmp_path: Path) -> Settings:
    return Settings(
        llm_provider="openai",
        openai_api_key=SecretStr("sk-test"),
        openai_base_url=BASE_URL,
        openai_model=MODEL,
        sqlite_path=tmp_path / "paperboy.db",
        llm_analysis_concurrency=3,
    )


def completion(content: dict[str, Any]) -> httpx.Response:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": json.dumps(content)},
            }
        ],
        "usage": {"prompt_tokens": USAGE[0], "completion_tokens": USAGE[1]},
    }
    return httpx.Response(200, json=body)


def data_block(request: httpx.Request) -> dict[str, Any]:
    content = json.loads(request.content)["messages"][1]["content"]
    block = content.split("```json\n", 1)[1].rsplit("\n```", 1)[0]
    return json.loads(block)  # type: ignore[no-any-return]


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[WorkerContext]:
    redis = fakeredis.FakeAsyncRedis()
    backend = await open_backend(settings(tmp_path))
    client = llm_client(settings(tmp_path))
    assert client is not None
    context: WorkerContext = {
        "redis": redis,  # type: ignore[typeddict-item]
        "settings": settings(tmp_path),
        "backend": backend,
        "tasks": TaskRepository(backend),
        "metrics": Metrics(redis),
        "writer": LLMWriter(client, MODEL, OpenLimiter()),
        "llm": client,
    }
    yield context
    await context["writer"].close()
    await client.close()
    await backend.close()
    await redis.aclose()


@pytest.fixture
def provider() -> Iterator[respx.Route]:
    with respx.mock(base_url=BASE_URL, assert_all_called=False) as router:
        yield router.post("/chat/completions")


async def claimed(ctx: WorkerContext) -> DigestTask:
    tasks = ctx["tasks"]
    await tasks.create(DigestTask(task_id="t-1", request=digest_body(top_n_articles=3)))
    task = await tasks.claim("t-1", "w-1", max_failures=3, max_interruptions=3)
    assert task is not None
    return task


async def test_a_failed_analysis_stops_its_siblings_and_their_usage_counts(
    ctx: WorkerContext, provider: respx.Route
) -> None:
    first_answered = asyncio.Event()
    slow_cancelled = asyncio.Event()

    async def answer(request: httpx.Request) -> httpx.Response:
        data = data_block(request)
        if "candidates" in data:  # the ranking: the first three, in order
            titles.extend(c["title"] for c in data["candidates"][:3])
            ids = [c["id"] for c in data["candidates"][:3]]
            return completion({"picks": [{"id": i, "relevance": 0.9, "reason": "r"} for i in ids]})
        position = titles.index(data["item"]["title"])
        if position == 0:
            first_answered.set()
            return completion({"summary": "s", "why_it_matters": "w", "key_takeaway": "k"})
        if position == 1:
            await first_answered.wait()
            return httpx.Response(401, json={"error": {"message": "no", "code": "invalid_key"}})
        try:
            await asyncio.Event().wait()  # the slow one: answers only if nobody cancels it
        except asyncio.CancelledError:
            slow_cancelled.set()
            raise
        raise AssertionError("unreachable")

    titles: list[str] = []
    provider.side_effect = answer
    task = await claimed(ctx)
    with pytest.raises(PermanentError) as caught:
        await Attempt(ctx, task, ctx["writer"]).run()

    assert caught.value.code == "llm_auth"
    assert slow_cancelled.is_set()  # stopped before the failure left the attempt
    row = await ctx["tasks"].get("t-1")
    assert row is not None
    assert row.usage.llm_requests == 2  # the ranking and the analysis that answered
    assert row.usage.prompt_tokens == 2 * USAGE[0]
