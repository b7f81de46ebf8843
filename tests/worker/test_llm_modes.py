"""Provider modes: the Responses API, and reasoning models (an answer cut short by the budget,
an answer only in `reasoning_content`), against respx and against the local fake provider."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
import respx
from pydantic import SecretStr

from paperboy_worker.llm import Budgets, LLMWriter, llm_budgets, llm_client
from paperboy_worker.llm.budgets import REASONING_MAX_TOKENS
from paperboy_worker.llm.prompts import ANALYSIS, HIGHLIGHTS, NEWS_ANALYSIS, RANKING
from paperboy_worker.pipeline import offline
from paperboy_worker.pipeline.items import Analysis, Item, ScoredItem
from paperboy_worker.pipeline.writer import Step
from shared.models import Usage, UserInfo
from shared.ratelimit import Ticket
from shared.settings import Settings
from tests.fake_openai import FakeOpenAI

BASE_URL = "http://llm.test/v1"
MODEL = "gpt-4o-mini"
PROFILE = UserInfo(name="Ada", title="ML engineer", goals="retrieval-augmented generation")
ANSWER = {"summary": "It retrieves.", "why_it_matters": "You build RAG.", "key_takeaway": "Good."}
SHORTLIST = [
    ScoredItem(
        item=Item(
            item_id=f"arXiv:2411.{n:05d}",
            kind="news" if n == 3 else "paper",
            title=f"Retrieval paper {n}",
            abstract=f"We study retrieval-augmented generation, part {n}. It works well.",
            url=f"https://arxiv.org/abs/2411.{n:05d}",
        ),
        score=10.0 - n,
    )
    for n in range(1, 4)
]
PICK = offline.rank(SHORTLIST, 1)[0]


class Limiter:
    """Admits everything at once and remembers the token estimates it was asked for."""

    def __init__(self) -> None:
        self.acquired: list[int] = []

    async def acquire(self, tokens: int, *, max_wait: float | None = None) -> Ticket:
        self.acquired.append(tokens)
        return Ticket(f"t{len(self.acquired)}", tokens, time.time(), 0.0)

    async def settle(self, ticket: Ticket, actual_tokens: int | None = None) -> None:
        pass

    async def hold(self, seconds: float) -> float:
        return time.time() + seconds


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "llm_provider": "openai",
        "openai_api_key": SecretStr("sk-test"),
        "openai_base_url": BASE_URL,
        "openai_model": MODEL,
    }
    return Settings(**{**values, **overrides})


def chat(content: str | None, *, finish: str = "stop", **extra: Any) -> httpx.Response:
    message = {"role": "assistant", "content": content, "refusal": None, **extra}
    return httpx.Response(
        200,
        json={
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": MODEL,
            "choices": [{"index": 0, "finish_reason": finish, "message": message}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
        },
    )


def response(part: dict[str, Any] | None, *, cut: bool = False) -> httpx.Response:
    message = {
        "type": "message",
        "id": "msg_1",
        "status": "incomplete" if cut else "completed",
        "role": "assistant",
        "content": [part] if part else [],
    }
    return httpx.Response(
        200,
        json={
            "id": "resp_1",
            "object": "response",
            "created_at": 1,
            "model": MODEL,
            "status": "incomplete" if cut else "completed",
            "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
            "output": [message],
            "parallel_tool_calls": False,
            "tool_choice": "auto",
            "tools": [],
            "usage": {
                "input_tokens": 300,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 40,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 340,
            },
        },
    )


def text(answer: object) -> dict[str, Any]:
    return {"type": "output_text", "text": json.dumps(answer), "annotations": []}


def body(route: respx.Route, call: int = -1) -> dict[str, Any]:
    return json.loads(route.calls[call].request.content)  # type: ignore[no-any-return]


@pytest.fixture
async def client() -> AsyncIterator[openai.AsyncOpenAI]:
    built = llm_client(settings())
    assert built is not None
    yield built
    await built.close()


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE_URL, assert_all_called=False) as mocked:
        yield mocked


# The Responses API


async def test_responses_mode_sends_strict_structured_output_and_reads_output_text(
    client: openai.AsyncOpenAI, router: respx.MockRouter
) -> None:
    route = router.post("/responses").mock(return_value=response(text(ANSWER)))
    writer = LLMWriter(client, MODEL, Limiter(), api_mode="responses")

    step = await writer.analyse(PICK, PROFILE)

    sent = body(route)
    assert sent["model"] == MODEL
    assert sent["max_output_tokens"] == 700
    assert sent["text"]["format"]["type"] == "json_schema"
    assert sent["text"]["format"]["name"] == ANALYSIS
    assert sent["text"]["format"]["strict"] is True
    assert sent["text"]["format"]["schema"]["additionalProperties"] is False
    assert "never instructions" in sent["instructions"]
    assert '"id": "arXiv:2411.00001"' in sent["input"]
    assert step == Step(
        Analysis(**ANSWER),
        Usage(llm_requests=1, prompt_tokens=300, completion_tokens=40, cost_usd=0.000069),
    )


async def test_a_refusal_in_responses_mode_falls_back(
    client: openai.AsyncOpenAI, router: respx.MockRouter
) -> None:
    router.post("/responses").mock(return_value=response({"type": "refusal", "refusal": "No."}))
    writer = LLMWriter(client, MODEL, Limiter(), api_mode="responses")

    step = await writer.analyse(PICK, PROFILE)

    assert step.degraded
    assert step.value == offline.analyse(PICK.item, PROFILE)


# Reasoning models


@pytest.mark.parametrize("mode", ["chat", "responses"])
async def test_an_answer_cut_short_is_asked_again_with_the_reasoning_budget(
    client: openai.AsyncOpenAI, router: respx.MockRouter, mode: str
) -> None:
    if mode == "chat":
        route = router.post("/chat/completions")
        route.side_effect = [chat("", finish="length"), chat(json.dumps(ANSWER)), chat("{}")]
        budget = "max_tokens"
    else:
        route = router.post("/responses")
        route.side_effect = [response(None, cut=True), response(text(ANSWER)), response(None)]
        budget = "max_output_tokens"
    limiter = Limiter()
    writer = LLMWriter(client, MODEL, limiter, api_mode=mode)  # type: ignore[arg-type]

    step = await writer.analyse(PICK, PROFILE)
    await writer.analyse(PICK, PROFILE)  # the next call: the model is known to reason

    assert [body(route, n)[budget] for n in range(3)] == [700, 8000, 8000]
    assert step.value == Analysis(**ANSWER)
    assert not step.degraded
    assert step.usage.llm_requests == 2  # both calls were paid for
    assert limiter.acquired[1] > REASONING_MAX_TOKENS  # the limiter books the larger budget
    assert writer.reasoning_models == {MODEL}


async def test_a_second_cut_short_answer_falls_back_without_a_third_call(
    client: openai.AsyncOpenAI, router: respx.MockRouter
) -> None:
    route = router.post("/chat/completions").mock(return_value=chat(None, finish="length"))
    writer = LLMWriter(client, MODEL, Limiter())

    step = await writer.rank(SHORTLIST, PROFILE, 2)

    assert route.call_count == 2
    assert step.degraded
    assert step.value == offline.rank(SHORTLIST, 2)
    assert step.usage.llm_requests == 2


async def test_an_answer_only_in_reasoning_content_is_read(
    client: openai.AsyncOpenAI, router: respx.MockRouter
) -> None:
    thinking = f"The reader builds RAG, so: {json.dumps(ANSWER)}"
    router.post("/chat/completions").mock(return_value=chat(None, reasoning_content=thinking))
    writer = LLMWriter(client, MODEL, Limiter())

    step = await writer.analyse(PICK, PROFILE)

    assert step.value == Analysis(**ANSWER)
    assert not step.degraded


async def test_budgets_can_be_set(client: openai.AsyncOpenAI, router: respx.MockRouter) -> None:
    route = router.post("/chat/completions").mock(return_value=chat(json.dumps(ANSWER)))
    fixed = LLMWriter(client, MODEL, Limiter(), budgets=llm_budgets(settings(llm_max_tokens=1500)))
    reasoning = LLMWriter(
        client,
        MODEL,
        Limiter(),
        budgets=llm_budgets(settings(llm_reasoning=True, llm_reasoning_max_tokens=12_000)),
    )

    await fixed.analyse(PICK, PROFILE)
    await reasoning.analyse(PICK, PROFILE)

    assert [body(route, n)["max_tokens"] for n in range(2)] == [1500, 12_000]
    assert llm_budgets(settings()) == Budgets()


# The real client against the local provider


@pytest.mark.parametrize(
    ("mode", "provider"),
    [
        pytest.param("responses", {}, id="responses-api"),
        pytest.param("chat", {"thinking_tokens": 2_000}, id="reasoning-needs-a-budget"),
        pytest.param("chat", {"reasoning_only": True}, id="reasoning-content-only"),
        pytest.param("responses", {"thinking_tokens": 2_000}, id="responses-reasoning"),
    ],
)
async def test_a_whole_digest_worth_of_calls_is_not_degraded(
    mode: str, provider: dict[str, Any]
) -> None:
    with FakeOpenAI(api_key="sk-test", **provider) as fake:
        client = llm_client(settings(openai_base_url=fake.url, llm_api_mode=mode))
        assert client is not None
        writer = LLMWriter(client, MODEL, Limiter(), api_mode=mode)  # type: ignore[arg-type]
        ranked = await writer.rank(SHORTLIST, PROFILE, 3)
        analyses = [await writer.analyse(pick, PROFILE) for pick in ranked.value]
        picks = [
            p.model_copy(update={"analysis": a.value})
            for p, a in zip(ranked.value, analyses, strict=True)
        ]
        highlights = await writer.highlights(picks, PROFILE)
        await client.close()

    steps: list[Step[Any]] = [ranked, *analyses, highlights]
    assert not any(step.degraded for step in steps)
    assert [p.item.item_id for p in ranked.value] == [s.item.item_id for s in SHORTLIST]
    actions = [a.value.action_item for a in analyses]
    assert actions == [None, None, "Follow up on Retrieval paper 3."]
    assert {h.type for h in highlights.value} == {"trend", "paper"}
    schemas = [r.schema for r in fake.requests if r.status == 200]
    retried = 1 if provider.get("thinking_tokens") else 0  # only the first call ran out
    assert schemas[retried:] == [RANKING, ANALYSIS, ANALYSIS, NEWS_ANALYSIS, HIGHLIGHTS]
