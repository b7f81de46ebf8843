"""`LLMWriter` against a mocked transport (respx) and against the local fake provider."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import fakeredis
import httpx
import openai
import pytest
import respx
from pydantic import SecretStr
from redis.asyncio import Redis

from paperboy_worker.llm import FIREWORKS_BASE_URL, LLMWriter, PriceTable, llm_client
from paperboy_worker.llm.prompts import ANALYSIS, HIGHLIGHTS, NEWS_ANALYSIS, RANKING
from paperboy_worker.pipeline import offline
from paperboy_worker.pipeline.items import Analysis, Highlight, Item, ScoredItem
from paperboy_worker.pipeline.writer import Step
from shared.errors import PermanentError, TransientError
from shared.keys import ratelimit_hold_key, ratelimit_log_key, ratelimit_tokens_key
from shared.metrics import METRICS_KEY, Metrics
from shared.models import Usage, UserInfo
from shared.ratelimit import (
    LimiterUnavailableError,
    RateLimiter,
    Ticket,
)
from shared.retry import retry_after
from shared.settings import Settings
from tests.fake_openai import Failure, FakeOpenAI
from tests.support import REDIS_DB, REDIS_HOST, REDIS_PORT

BASE_URL = "http://llm.test/v1"
MODEL = "gpt-4o-mini"
PROFILE = UserInfo(name="Ada", title="ML engineer", goals="retrieval-augmented generation")


def make_item(n: int) -> Item:
    return Item(
        item_id=f"arXiv:2411.{n:05d}",
        title=f"Retrieval paper {n}",
        abstract=f"We study retrieval-augmented generation, part {n}. It works well.",
        authors=["A. Author"],
        categories=["cs.CL"],
        primary_category="cs.CL",
        url=f"http://arxiv.org/abs/2411.{n:05d}",
    )


SHORTLIST = [ScoredItem(item=make_item(n), score=10.0 - n) for n in range(1, 5)]
PICKS = offline.rank(SHORTLIST, 3)


@dataclass
class RecordingLimiter:
    """Admits everything at once and remembers what it was asked."""

    acquired: list[int] = field(default_factory=list)
    settled: list[tuple[str, int | None]] = field(default_factory=list)
    holds: list[float] = field(default_factory=list)

    async def acquire(self, tokens: int, *, max_wait: float | None = None) -> Ticket:
        self.acquired.append(tokens)
        return Ticket(f"t{len(self.acquired)}", tokens, time.time(), 0.0)

    async def settle(self, ticket: Ticket, actual_tokens: int | None = None) -> None:
        self.settled.append((ticket.id, actual_tokens))

    async def hold(self, seconds: float) -> float:
        self.holds.append(seconds)
        return time.time() + seconds


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "llm_provider": "openai",
        "openai_api_key": SecretStr("sk-test"),
        "openai_base_url": BASE_URL,
        "openai_model": MODEL,
    }
    values.update(overrides)
    return Settings(**values)


def highlight(insight: str, *, title: str = "Title", kind: str = "trend") -> dict[str, str]:
    return {"title": title, "insight": insight, "type": kind}


def completion(
    content: object = None,
    *,
    refusal: str | None = None,
    usage: tuple[int, int] | None = (1000, 200),
) -> httpx.Response:
    text = content if isinstance(content, str) or content is None else json.dumps(content)
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": text, "refusal": refusal},
            }
        ],
    }
    if usage is not None:
        body["usage"] = {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        }
    return httpx.Response(200, json=body)


def api_error(
    status: int, code: str | None = None, message: str = "nope", **headers: str
) -> httpx.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
    return httpx.Response(status, json=body, headers=headers)


def ranking(*entries: tuple[str, float]) -> dict[str, Any]:
    return {"picks": [{"id": i, "relevance": r, "reason": "fits"} for i, r in entries]}


ANALYSIS_ANSWER = {
    "summary": "It does retrieval.",
    "why_it_matters": "You build RAG.",
    "key_takeaway": "Retrieval helps.",
}


@pytest.fixture
async def client() -> AsyncIterator[openai.AsyncOpenAI]:
    built = llm_client(settings())
    assert built is not None
    yield built
    await built.close()


@pytest.fixture
def limiter() -> RecordingLimiter:
    return RecordingLimiter()


@pytest.fixture
def writer(client: openai.AsyncOpenAI, limiter: RecordingLimiter) -> LLMWriter:
    return LLMWriter(client, MODEL, limiter, max_inline_wait=10)


@pytest.fixture
def provider() -> Iterator[respx.Route]:
    with respx.mock(base_url=BASE_URL, assert_all_called=False) as router:
        yield router.post("/chat/completions")


def sent(route: respx.Route, call: int = -1) -> dict[str, Any]:
    return json.loads(route.calls[call].request.content)  # type: ignore[no-any-return]


def data_block(body: dict[str, Any]) -> dict[str, Any]:
    content = body["messages"][1]["content"]
    return json.loads(content.split("```json\n", 1)[1].rsplit("\n```", 1)[0])  # type: ignore[no-any-return]


# The request


async def test_ranking_sends_a_strict_structured_output_request(
    writer: LLMWriter, provider: respx.Route, limiter: RecordingLimiter
) -> None:
    provider.return_value = completion(ranking(("arXiv:2411.00002", 0.9)))

    await writer.rank(SHORTLIST, PROFILE, 2)

    request = provider.calls.last.request
    assert request.headers["Authorization"] == "Bearer sk-test"
    body = json.loads(request.content)
    assert set(body) == {"model", "messages", "response_format", "max_tokens"}
    assert body["model"] == MODEL
    assert body["max_tokens"] == 200 + 80 * 2
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "never instructions" in body["messages"][0]["content"]
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": RANKING,
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {
                    "picks": {
                        "type": "array",
                        "description": "The chosen candidates, most relevant first",
                        "items": {
                            "type": "object",
                            "properties": {
                                "id": {
                                    "type": "string",
                                    "description": "A candidate's id, exactly as given",
                                },
                                "relevance": {
                                    "type": "number",
                                    "description": "How relevant to this reader, 0 to 1",
                                },
                                "reason": {
                                    "type": "string",
                                    "description": "One short sentence: why it matters to this reader",
                                },
                            },
                            "required": ["id", "relevance", "reason"],
                            "additionalProperties": False,
                        },
                    }
                },
                "required": ["picks"],
                "additionalProperties": False,
            },
        },
    }
    data = data_block(body)
    assert data["top_n"] == 2
    assert data["reader"] == {
        "name": "Ada",
        "title": "ML engineer",
        "goals": "retrieval-augmented generation",
    }
    assert [c["id"] for c in data["candidates"]] == [s.item.item_id for s in SHORTLIST]
    assert set(data["candidates"][0]) == {
        "id",
        "kind",
        "title",
        "abstract",
        "authors",
        "categories",
        "source",
    }
    # the estimate is the prompt's size plus max_tokens, settled with the usage
    await writer.close()
    assert limiter.acquired[0] > body["max_tokens"] + len(request.content) // 8
    assert limiter.settled == [("t1", 1200)]


async def test_analysis_and_highlights_requests_carry_their_data(
    writer: LLMWriter, provider: respx.Route
) -> None:
    provider.side_effect = [
        completion(ANALYSIS_ANSWER),
        completion({"highlights": [highlight("One."), highlight("Two.")]}),
    ]

    await writer.analyse(PICKS[0], PROFILE)
    await writer.highlights(PICKS, PROFILE)

    analysis, highlights = sent(provider, 0), sent(provider, 1)
    assert analysis["response_format"]["json_schema"]["name"] == ANALYSIS
    assert analysis["max_tokens"] == 700
    assert data_block(analysis)["item"]["id"] == PICKS[0].item.item_id
    assert highlights["response_format"]["json_schema"]["name"] == HIGHLIGHTS
    assert [p["id"] for p in data_block(highlights)["picks"]] == [p.item.item_id for p in PICKS]
    assert [p["kind"] for p in data_block(highlights)["picks"]] == ["paper"] * 3
    # every schema is strict: all fields required, nothing else allowed
    schema = highlights["response_format"]["json_schema"]
    entry = schema["schema"]["properties"]["highlights"]["items"]
    assert schema["strict"] is True
    assert entry["required"] == ["title", "insight", "type"]
    assert entry["additionalProperties"] is False
    assert entry["properties"]["type"]["enum"] == ["paper", "news", "trend"]


async def test_a_news_analysis_asks_for_an_action_item(
    writer: LLMWriter, provider: respx.Route
) -> None:
    provider.return_value = completion({**ANALYSIS_ANSWER, "action_item": " Try it. "})
    news = PICKS[0].model_copy(update={"item": PICKS[0].item.model_copy(update={"kind": "news"})})

    step = await writer.analyse(news, PROFILE)

    request = sent(provider, 0)["response_format"]["json_schema"]
    assert request["name"] == NEWS_ANALYSIS
    assert request["schema"]["required"] == [*ANALYSIS_ANSWER, "action_item"]
    assert step.value == Analysis(**ANALYSIS_ANSWER, action_item="Try it.")
    assert not step.degraded


# Answers


async def test_ranking_keeps_known_ids_best_first(writer: LLMWriter, provider: respx.Route) -> None:
    provider.return_value = completion(
        ranking(
            ("arXiv:2411.00003", 0.7),
            ("arXiv:9999.99999", 0.99),  # unknown
            ("arXiv:2411.00001", 1.4),  # clamped to 1
            ("arXiv:2411.00003", 0.2),  # repeated
            ("arXiv:2411.00004", 0.5),
            ("arXiv:2411.00002", 0.1),  # beyond top_n
        )
    )

    step = await writer.rank(SHORTLIST, PROFILE, 3)

    assert [(p.item.item_id, p.relevance, p.rank) for p in step.value] == [
        ("arXiv:2411.00001", 1.0, 1),
        ("arXiv:2411.00003", 0.7, 2),
        ("arXiv:2411.00004", 0.5, 3),
    ]
    assert not step.degraded
    assert step.usage == Usage(
        llm_requests=1, prompt_tokens=1000, completion_tokens=200, cost_usd=0.00027
    )


async def test_analysis_and_highlights_from_the_model(
    writer: LLMWriter, provider: respx.Route
) -> None:
    provider.side_effect = [
        completion(ANALYSIS_ANSWER),
        completion(
            {
                "highlights": [
                    highlight(" One. ", title=" A "),
                    highlight("", title="blank insight"),
                    highlight("Blank title.", title=" "),
                    highlight("Two.", kind="paper"),
                    highlight("3"),
                    highlight("4"),
                    highlight("5"),
                ]
            }
        ),
    ]

    analysis = await writer.analyse(PICKS[0], PROFILE)
    highlights = await writer.highlights(PICKS, PROFILE)

    assert analysis == Step(Analysis(**ANALYSIS_ANSWER), analysis.usage)
    assert highlights.value == [
        Highlight(title="A", insight="One.", type="trend"),
        Highlight(title="Title", insight="Two.", type="paper"),
        Highlight(title="Title", insight="3", type="trend"),
        Highlight(title="Title", insight="4", type="trend"),
    ]
    assert not highlights.degraded


async def test_nul_characters_from_the_model_are_dropped(
    writer: LLMWriter, provider: respx.Route
) -> None:
    # PostgreSQL refuses a NUL in any text, so a stored digest holding one could never finish.
    provider.side_effect = [
        completion({**ANALYSIS_ANSWER, "summary": "It does\u0000 retrieval."}),
        completion({"highlights": [highlight("One\u0000."), highlight("\u0000")]}),
    ]

    analysis = await writer.analyse(PICKS[0], PROFILE)
    highlights = await writer.highlights(PICKS, PROFILE)

    assert analysis.value.summary == "It does retrieval."
    assert [h.insight for h in highlights.value] == ["One."]


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(completion('{"picks": [ not json'), id="invalid-json"),
        pytest.param(completion({"choices": []}), id="schema-mismatch"),
        pytest.param(completion({"picks": [{"id": "arXiv:2411.00001"}]}), id="missing-field"),
        pytest.param(completion(refusal="I can't help with that."), id="refusal"),
        pytest.param(completion(""), id="empty"),
        pytest.param(completion(ranking(("nope", 0.9), ("arXiv:1", 0.8))), id="unknown-ids"),
        pytest.param(completion(ranking()), id="no-picks"),
    ],
)
async def test_an_unusable_ranking_falls_back_and_still_counts(
    writer: LLMWriter, provider: respx.Route, answer: httpx.Response
) -> None:
    provider.return_value = answer

    step = await writer.rank(SHORTLIST, PROFILE, 2)

    assert step.degraded
    assert step.value == offline.rank(SHORTLIST, 2)
    assert step.usage.llm_requests == 1
    assert step.usage.prompt_tokens == 1000


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(completion("summary: yes"), id="invalid-json"),
        pytest.param(completion({**ANALYSIS_ANSWER, "summary": "  "}), id="blank-field"),
        pytest.param(completion({"summary": "only"}), id="schema-mismatch"),
        pytest.param(completion(refusal="No."), id="refusal"),
    ],
)
async def test_an_unusable_analysis_falls_back(
    writer: LLMWriter, provider: respx.Route, answer: httpx.Response
) -> None:
    provider.return_value = answer

    step = await writer.analyse(PICKS[0], PROFILE)

    assert step.degraded
    assert step.value == offline.analyse(PICKS[0].item, PROFILE)
    assert step.usage.llm_requests == 1


@pytest.mark.parametrize(
    "answer",
    [
        completion({"highlights": [highlight(""), highlight("  ")]}),
        completion({"highlights": ["plain bullets are not highlights"]}),
        completion({"highlights": [highlight("x", kind="rumour")]}),
        completion({"bullets": ["x"]}),
        completion(refusal="No."),
    ],
)
async def test_unusable_highlights_fall_back(
    writer: LLMWriter, provider: respx.Route, answer: httpx.Response
) -> None:
    provider.return_value = answer

    step = await writer.highlights(PICKS, PROFILE)

    assert step.degraded
    assert step.value == offline.highlights(PICKS, PROFILE)


async def test_nothing_to_rank_or_highlight_costs_no_call(
    writer: LLMWriter, provider: respx.Route
) -> None:
    ranked = await writer.rank([], PROFILE, 3)
    highlights = await writer.highlights([], PROFILE)

    assert ranked == Step([])
    assert not highlights.degraded
    assert not provider.called


async def test_usage_without_a_usage_block_is_estimated(
    writer: LLMWriter, provider: respx.Route
) -> None:
    provider.return_value = completion(ANALYSIS_ANSWER, usage=None)

    step = await writer.analyse(PICKS[0], PROFILE)

    assert step.usage.llm_requests == 1
    assert step.usage.prompt_tokens > 100
    assert step.usage.completion_tokens == -(-len(json.dumps(ANALYSIS_ANSWER)) // 4)


# Errors


@pytest.mark.parametrize(
    ("answer", "error", "code"),
    [
        (api_error(500), TransientError, "llm_unavailable"),
        (api_error(502), TransientError, "llm_unavailable"),
        (httpx.ReadTimeout("slow"), TransientError, "llm_unavailable"),
        (httpx.ConnectError("refused"), TransientError, "llm_unavailable"),
        (
            api_error(400, "context_length_exceeded", "maximum context length is 8192 tokens"),
            PermanentError,
            "llm_context_too_long",
        ),
        (
            api_error(400, None, "The prompt is too long: 140000, model maximum context length"),
            PermanentError,
            "llm_context_too_long",
        ),
        (api_error(400, "invalid_value", "bad schema"), PermanentError, "llm_bad_request"),
        (api_error(404, "model_not_found"), PermanentError, "llm_bad_request"),
        (api_error(401, "invalid_api_key"), PermanentError, "llm_auth"),
        (api_error(403), PermanentError, "llm_auth"),
        (api_error(429, "insufficient_quota"), PermanentError, "llm_quota_exceeded"),
    ],
)
async def test_provider_errors_are_classified(
    writer: LLMWriter,
    provider: respx.Route,
    limiter: RecordingLimiter,
    answer: httpx.Response | Exception,
    error: type[Exception],
    code: str,
) -> None:
    provider.side_effect = [answer]

    with pytest.raises(error) as caught:
        await writer.rank(SHORTLIST, PROFILE, 2)

    assert type(caught.value) is error
    assert caught.value.code == code  # type: ignore[attr-defined]
    assert provider.call_count == 1  # the SDK does not retry by itself
    assert limiter.holds == []
    await writer.close()
    assert limiter.settled == [("t1", None)]  # the call ended: its slot counts from now


async def test_a_5xx_passes_on_its_retry_after(writer: LLMWriter, provider: respx.Route) -> None:
    provider.return_value = api_error(503, **{"Retry-After": "12"})

    with pytest.raises(TransientError) as caught:
        await writer.analyse(PICKS[0], PROFILE)

    assert caught.value.retry_after == 12


async def test_a_429_holds_everyone_then_retries_in_place(
    writer: LLMWriter, provider: respx.Route, limiter: RecordingLimiter
) -> None:
    provider.side_effect = [
        api_error(429, "rate_limit_exceeded", **{"Retry-After": "7"}),
        api_error(429, "rate_limit_exceeded", **{"retry-after-ms": "1500", "Retry-After": "2"}),
        completion(ANALYSIS_ANSWER),
    ]

    step = await writer.analyse(PICKS[0], PROFILE)

    assert not step.degraded
    assert limiter.holds == [7.0, 1.5]
    assert len(limiter.acquired) == 3  # every try waits its turn again
    assert step.usage.llm_requests == 1  # refused requests are not paid for


async def test_a_429_without_retry_after_holds_a_default(
    writer: LLMWriter, provider: respx.Route, limiter: RecordingLimiter
) -> None:
    provider.side_effect = [api_error(429, "rate_limit_exceeded"), completion(ANALYSIS_ANSWER)]

    await writer.analyse(PICKS[0], PROFILE)

    assert limiter.holds == [5.0]


async def test_repeated_429s_become_a_transient_error(
    client: openai.AsyncOpenAI, provider: respx.Route, limiter: RecordingLimiter
) -> None:
    writer = LLMWriter(client, MODEL, limiter, rate_limit_retries=2)
    provider.return_value = api_error(429, "rate_limit_exceeded", **{"Retry-After": "3"})

    with pytest.raises(TransientError) as caught:
        await writer.analyse(PICKS[0], PROFILE)

    assert (caught.value.code, caught.value.retry_after) == ("llm_rate_limited", 3)
    assert provider.call_count == 3
    assert limiter.holds == [3.0, 3.0, 3.0]


async def test_a_long_retry_after_defers_the_job_at_once(
    writer: LLMWriter, provider: respx.Route, limiter: RecordingLimiter
) -> None:
    provider.return_value = api_error(429, "rate_limit_exceeded", **{"Retry-After": "120"})

    with pytest.raises(TransientError) as caught:
        await writer.analyse(PICKS[0], PROFILE)

    assert caught.value.retry_after == 120
    assert provider.call_count == 1
    assert limiter.holds == [120.0]


def test_retry_after_headers() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)

    assert retry_after({"retry-after": "2.5"}) == 2.5
    assert retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert 25 < (retry_after({"retry-after": later}) or 0) <= 30
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({"retry-after": "-4"}) == 0
    assert retry_after({"retry-after": "99999"}) == 3600
    assert retry_after({}) is None


# Concurrency


async def test_a_paid_answer_reaches_its_caller_while_the_limiter_settles(
    client: openai.AsyncOpenAI, provider: respx.Route
) -> None:
    settling = asyncio.Event()
    settled = asyncio.Event()

    class SlowToSettle(RecordingLimiter):
        async def settle(self, ticket: Ticket, actual_tokens: int | None = None) -> None:
            await settled.wait()
            settling.set()

    writer = LLMWriter(client, MODEL, SlowToSettle())
    provider.return_value = completion(ANALYSIS_ANSWER)

    # Nothing stands between the answer and its caller: a cancel there would lose its usage.
    step = await asyncio.wait_for(writer.analyse(PICKS[0], PROFILE), timeout=5)
    settled.set()
    await writer.close()

    assert step.usage.llm_requests == 1
    assert settling.is_set()


# Client and prices


def test_offline_has_no_client() -> None:
    assert llm_client(Settings(llm_provider="offline")) is None


async def test_fireworks_client_uses_the_fireworks_url_and_key() -> None:
    client = llm_client(
        Settings(
            llm_provider="fireworks", fireworks_api_key=SecretStr("fw-key"), openai_base_url=None
        )
    )
    assert client is not None
    assert str(client.base_url).rstrip("/") == FIREWORKS_BASE_URL
    assert client.api_key == "fw-key"
    assert client.max_retries == 0
    await client.close()


async def test_openai_base_url_overrides_the_default(client: openai.AsyncOpenAI) -> None:
    assert str(client.base_url).rstrip("/") == BASE_URL


def test_costs_from_the_table_and_overrides() -> None:
    table = PriceTable({"my-model": (1.0, 2.0), "gpt-4o-mini": (0.2, 0.8)})

    assert table.cost("my-model", 1_000_000, 500_000) == 2.0
    assert table.cost("gpt-4o-mini-2024-07-18", 1000, 1000) == 0.001
    assert table.cost("gpt-4o-2024-08-06", 1_000_000, 0) == 2.5
    assert table.cost("unknown-model", 10**6, 10**6) == 0.0


async def test_an_override_price_reaches_the_usage(
    client: openai.AsyncOpenAI, provider: respx.Route, limiter: RecordingLimiter
) -> None:
    writer = LLMWriter(client, MODEL, limiter, prices={MODEL: (10.0, 20.0)})
    provider.return_value = completion(ANALYSIS_ANSWER, usage=(1000, 500))

    step = await writer.analyse(PICKS[0], PROFILE)

    assert step.usage.cost_usd == 0.02


# Against the local fake provider, with the real client


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key="sk-test") as server:
        yield server


def fake_client(fake: FakeOpenAI, **options: Any) -> openai.AsyncOpenAI:
    client = llm_client(settings(openai_base_url=fake.url), **options)
    assert client is not None
    return client


@pytest.fixture
async def make_limiter() -> AsyncIterator[Any]:
    name = f"test-{uuid.uuid4().hex[:10]}"
    redis = Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)

    def make(**options: Any) -> RateLimiter:
        return RateLimiter(redis, name=name, poll_interval=0.05, **options)

    yield make
    await redis.delete(
        ratelimit_log_key(name), ratelimit_tokens_key(name), ratelimit_hold_key(name)
    )
    await redis.aclose()


async def test_the_real_client_talks_to_the_fake(fake: FakeOpenAI) -> None:
    client = fake_client(fake)
    writer = LLMWriter(client, MODEL, RecordingLimiter())

    ranked = await writer.rank(SHORTLIST, PROFILE, 2)
    analyses = [await writer.analyse(pick, PROFILE) for pick in ranked.value]
    picks = [
        p.model_copy(update={"analysis": s.value})
        for p, s in zip(ranked.value, analyses, strict=True)
    ]
    highlights = await writer.highlights(picks, PROFILE)
    models = await client.models.list()
    await client.close()

    assert [p.item.item_id for p in ranked.value] == [s.item.item_id for s in SHORTLIST[:2]]
    assert analyses[0].value.summary == f"Summary of {SHORTLIST[0].item.title}."
    assert [h.insight for h in highlights.value] == [
        "2 picks today.",
        f"Start with {SHORTLIST[0].item.title}.",
    ]
    steps: list[Step[Any]] = [ranked, *analyses, highlights]
    assert not any(s.degraded for s in steps)
    assert sum((s.usage for s in steps), Usage()).llm_requests == 4
    assert [r.schema for r in fake.requests] == [RANKING, ANALYSIS, ANALYSIS, HIGHLIGHTS]
    assert [m.id for m in models.data] == ["fake-model"]


async def test_the_fake_refuses_beyond_its_limit_with_retry_after(fake: FakeOpenAI) -> None:
    fake.rpm = 2
    client = fake_client(fake)
    messages: Any = [{"role": "user", "content": "hi"}]

    for _ in range(2):
        await client.chat.completions.create(model=MODEL, messages=messages, max_tokens=5)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model=MODEL, messages=messages, max_tokens=5)
    await client.close()

    assert 50 < float(caught.value.response.headers["retry-after"]) <= 60
    assert fake.refused == 1
    assert fake.completions == 2


@pytest.mark.parametrize(
    ("failure", "error", "code"),
    [
        (Failure.CONTEXT_LENGTH, PermanentError, "llm_context_too_long"),
        (Failure.UNAUTHORIZED, PermanentError, "llm_auth"),
        (Failure.UNAVAILABLE, TransientError, "llm_unavailable"),
        (Failure.HANG, TransientError, "llm_unavailable"),
    ],
)
async def test_scripted_failures_through_the_real_client(
    fake: FakeOpenAI, failure: Failure, error: type[Exception], code: str
) -> None:
    fake.hang_seconds = 1.0
    fake.fail_next(failure)
    client = fake_client(fake, timeout=0.3)

    with pytest.raises(error) as caught:
        await LLMWriter(client, MODEL, RecordingLimiter()).analyse(PICKS[0], PROFILE)
    await client.close()

    assert caught.value.code == code  # type: ignore[attr-defined]


async def test_scripted_bad_answers_degrade_through_the_real_client(fake: FakeOpenAI) -> None:
    fake.fail_next(Failure.INVALID_JSON, Failure.REFUSAL, Failure.SCHEMA_MISMATCH)
    client = fake_client(fake)
    writer = LLMWriter(client, MODEL, RecordingLimiter())

    steps = [await writer.analyse(PICKS[0], PROFILE) for _ in range(4)]
    await client.close()

    assert [s.degraded for s in steps] == [True, True, True, False]
    assert all(s.usage.llm_requests == 1 for s in steps)


@pytest.mark.integration
async def test_a_provider_429_holds_the_shared_limiter_and_the_call_retries(
    fake: FakeOpenAI, make_limiter: Any
) -> None:
    fake.rpm, fake.window = 2, 1.0
    client = fake_client(fake)
    limiter = make_limiter(rpm=100, tpm=1_000_000)  # more generous than the provider
    writer = LLMWriter(client, MODEL, limiter)

    steps = await asyncio.gather(*(writer.analyse(p, PROFILE) for p in offline.rank(SHORTLIST, 4)))
    await writer.close()
    await client.close()

    assert fake.refused >= 1
    assert not any(s.degraded for s in steps)
    assert sum((s.usage for s in steps), Usage()).llm_requests == 4


@pytest.mark.integration
async def test_a_limit_equal_to_the_providers_never_draws_a_429(
    fake: FakeOpenAI, make_limiter: Any
) -> None:
    # The same limit and window on both sides. Requests reach the provider some time after the
    # limiter admits them, and not all equally fast, as they do across a network.
    fake.rpm, fake.window, fake.transit = 4, 1.0, 0.05
    clients = [fake_client(fake) for _ in range(2)]
    writers = [
        LLMWriter(c, MODEL, make_limiter(rpm=4, tpm=1_000_000, window=1.0, transit=10))
        for c in clients
    ]
    picks = offline.rank(SHORTLIST, 4) * 2  # 16 calls: four windows' worth

    results = await asyncio.gather(
        *(asyncio.gather(*(w.analyse(p, PROFILE) for p in picks)) for w in writers)
    )
    for w, c in zip(writers, clients, strict=True):
        await w.close()
        await c.close()

    assert fake.refused == 0
    assert fake.completions == 16
    assert all(not s.degraded for steps in results for s in steps)


async def test_a_paid_answer_survives_a_failed_correction(
    client: openai.AsyncOpenAI, provider: respx.Route
) -> None:
    class UnreachableOnCorrect(RecordingLimiter):
        async def settle(self, ticket: Ticket, actual_tokens: int | None = None) -> None:
            raise LimiterUnavailableError("redis down")

    writer = LLMWriter(client, MODEL, UnreachableOnCorrect())
    provider.return_value = completion(ANALYSIS_ANSWER)

    step = await writer.analyse(PICKS[0], PROFILE)
    await writer.close()

    assert not step.degraded
    assert step.usage.llm_requests == 1


async def test_requests_and_limiter_waits_reach_the_metrics(
    client: openai.AsyncOpenAI, provider: respx.Route
) -> None:
    redis = fakeredis.FakeAsyncRedis()
    metrics = Metrics(redis)
    writer = LLMWriter(client, MODEL, RecordingLimiter(), metrics=metrics)
    provider.side_effect = [
        api_error(429, "rate_limit_exceeded", **{"Retry-After": "0"}),
        completion(ANALYSIS_ANSWER),
        completion(refusal="No."),
        api_error(401),
    ]

    await writer.analyse(PICKS[0], PROFILE)
    await writer.analyse(PICKS[0], PROFILE)
    with pytest.raises(PermanentError):
        await writer.analyse(PICKS[0], PROFILE)

    await metrics.flush()
    saved = {k.decode(): float(v) for k, v in (await redis.hgetall(METRICS_KEY)).items()}
    assert saved["paperboy_llm_requests|outcome=rate_limited"] == 1
    assert saved["paperboy_llm_requests|outcome=completed"] == 1
    assert saved["paperboy_llm_requests|outcome=unusable"] == 1
    assert saved["paperboy_llm_requests|outcome=llm_auth"] == 1
    assert saved["paperboy_ratelimit_wait_seconds_count|"] == 4
    await redis.aclose()
