"""`LLMWriter`: a digest's paid steps done by a model, each with its offline version as fallback.

Every call waits its turn at the shared rate limiter (prompt size plus `max_tokens`, settled
with the response's usage when the call ends), asks for JSON in a strict schema and validates
it with pydantic. An unusable answer (invalid JSON, a schema mismatch, a refusal, no known ids)
is replaced by the deterministic step and marks the step degraded; its usage still counts, it
was paid for. A 429 holds the limiter for every worker and is retried here, because waiting is
not a failure; other provider errors become `TransientError` or `PermanentError` for the job to
act on.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

import openai
from pydantic import BaseModel, ValidationError

from paperboy_worker.llm import prompts
from paperboy_worker.llm.budgets import Budgets
from paperboy_worker.llm.errors import classify, is_quota_exhausted
from paperboy_worker.llm.modes import MODES, ApiMode, Completion
from paperboy_worker.llm.prices import PriceTable
from paperboy_worker.llm.prompts import AnalysisOutput, HighlightsOutput, Prompt, RankingOutput
from paperboy_worker.pipeline import offline
from paperboy_worker.pipeline.items import (
    Analysis,
    Highlight,
    Pick,
    ScoredItem,
    without_nul,
)
from paperboy_worker.pipeline.writer import Step
from shared.errors import PaperboyError
from shared.metrics import Metrics
from shared.models import Usage, UserInfo
from shared.ratelimit import Limiter, LimiterUnavailableError, Ticket
from shared.retry import retry_after

log = logging.getLogger("paperboy.llm")
M = TypeVar("M", bound=BaseModel)

DEFAULT_HOLD_SECONDS = 5.0  # a 429 without Retry-After
ANALYSIS_CHARS = 1_200
HIGHLIGHT_TITLE_CHARS = 80
HIGHLIGHT_INSIGHT_CHARS = 200
MAX_HIGHLIGHTS = 4


@dataclass(frozen=True)
class Answer(Generic[M]):
    """A completed call: the validated output (None when unusable, with why) and its cost."""

    output: M | None
    usage: Usage
    problem: str | None = None
    ran_out: bool = False  # no answer because the completion budget ran out


class LLMWriter:
    """The `Writer` that asks an OpenAI-compatible model; one per process, shared by its jobs."""

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        model: str,
        limiter: Limiter,
        *,
        prices: Mapping[str, tuple[float, float]] | None = None,
        rate_limit_retries: int = 3,
        max_inline_wait: float = 60.0,
        max_limiter_wait: float | None = 300.0,
        metrics: Metrics | None = None,
        api_mode: ApiMode = "chat",
        budgets: Budgets | None = None,
    ) -> None:
        self.client = client
        self.model = model
        self.limiter = limiter
        self.mode = MODES[api_mode]
        self.budgets = budgets or Budgets()
        # Models seen to spend their budget thinking; their calls get the reasoning budget.
        self.reasoning_models: set[str] = {model} if self.budgets.reasoning else set()
        self.prices = PriceTable(prices)
        # A 429 is retried here this many times, when its Retry-After is at most
        # `max_inline_wait`; beyond that the job is deferred rather than holding a worker slot.
        self.rate_limit_retries = rate_limit_retries
        self.max_inline_wait = max_inline_wait
        self.max_limiter_wait = max_limiter_wait
        # Requests by outcome and limiter waits; tokens and cost are the caller's, from usage.
        self.metrics = metrics
        self._settling: set[asyncio.Task[None]] = set()
        if self.prices.price(model) is None:
            log.warning("no price for the LLM model; its cost counts as 0", extra={"model": model})

    async def rank(
        self, shortlisted: list[ScoredItem], profile: UserInfo, top_n: int
    ) -> Step[list[Pick]]:
        if not shortlisted or top_n < 1:
            return Step(offline.rank(shortlisted, top_n))
        answer = await self._ask(prompts.ranking(shortlisted, profile, top_n))
        picks = _picks(answer.output, shortlisted, top_n) if answer.output else []
        if not picks:
            self._fell_back(prompts.RANKING, answer.problem or "no_known_ids")
            return Step(offline.rank(shortlisted, top_n), answer.usage, degraded=True)
        return Step(picks, answer.usage)

    async def analyse(self, pick: Pick, profile: UserInfo) -> Step[Analysis]:
        item = pick.item
        news = item.kind == "news"
        prompt = prompts.news_analysis(item, profile) if news else prompts.analysis(item, profile)
        answer = await self._ask(prompt)
        analysis = _analysis(answer.output) if answer.output else None
        if analysis is None:
            self._fell_back(prompt.schema_name, answer.problem or "blank_fields", item.item_id)
            return Step(offline.analyse(item, profile), answer.usage, degraded=True)
        return Step(analysis, answer.usage)

    async def highlights(self, picks: list[Pick], profile: UserInfo) -> Step[list[Highlight]]:
        if not picks:
            return Step(offline.highlights(picks, profile))
        answer = await self._ask(prompts.highlights(picks, profile))
        found = _highlights(answer.output) if answer.output else []
        if not found:
            self._fell_back(prompts.HIGHLIGHTS, answer.problem or "no_highlights")
            return Step(offline.highlights(picks, profile), answer.usage, degraded=True)
        return Step(found, answer.usage)

    async def close(self) -> None:
        """Wait for the requests still being settled in the limiter (at shutdown)."""
        await asyncio.gather(*self._settling)

    async def _ask(self, prompt: Prompt[M]) -> Answer[M]:
        """The call, with its budget; a reasoning model that ran out of it is asked once more
        with the reasoning budget, and remembered as one that reasons."""
        prompt = prompt.with_budget(self.budgets.for_step(prompt.max_tokens, self._reasons()))
        answer = await self._call(prompt)
        if not answer.ran_out or prompt.max_tokens >= self.budgets.reasoning_max_tokens:
            return answer
        self.reasoning_models.add(self.model)
        log.warning(
            "llm answer cut short by its budget; retrying with the reasoning budget",
            extra={
                "llm_step": prompt.schema_name,
                "model": self.model,
                "max_tokens": prompt.max_tokens,
                "reasoning_max_tokens": self.budgets.reasoning_max_tokens,
            },
        )
        again = await self._call(prompt.with_budget(self.budgets.reasoning_max_tokens))
        return Answer(again.output, answer.usage + again.usage, again.problem, again.ran_out)

    def _reasons(self) -> bool:
        return self.model in self.reasoning_models

    async def _call(self, prompt: Prompt[M]) -> Answer[M]:
        refusals = 0
        while True:
            ticket = await self.limiter.acquire(
                prompt.estimated_tokens(), max_wait=self.max_limiter_wait
            )
            self._observe_wait(ticket)
            started = time.monotonic()
            used: int | None = None
            try:
                response = await self.mode.complete(self.client, self.model, prompt)
                answer = self._answer(prompt, ticket, response, time.monotonic() - started)
                used = answer.usage.prompt_tokens + answer.usage.completion_tokens
            except openai.RateLimitError as exc:
                refusals += 1
                self._count("rate_limited")
                if await self._wait_out(exc, prompt, refusals):
                    continue
                raise self._failed(exc, prompt) from exc
            except openai.APIError as exc:
                error = self._failed(exc, prompt)
                self._count(error.code)
                raise error from exc
            finally:
                # However the call ended (cancelled too), its slot counts from now.
                self._settle_later(ticket, used)
            return answer

    def _settle_later(self, ticket: Ticket, tokens: int | None) -> None:
        """Settle `ticket` in the background: nothing may stand between a paid answer and the
        caller who counts it, since a cancelled sibling would otherwise lose it there."""
        settling = asyncio.create_task(self._settle(ticket, tokens))
        self._settling.add(settling)
        settling.add_done_callback(self._settling.discard)

    async def _settle(self, ticket: Ticket, tokens: int | None) -> None:
        try:
            await self.limiter.settle(ticket, tokens)
        except LimiterUnavailableError:
            # The request keeps its in-flight score and estimate, which err on the safe side.
            log.warning("llm request not settled in the rate limiter", extra={"model": self.model})

    async def _wait_out(self, exc: openai.RateLimitError, prompt: Prompt[M], refusals: int) -> bool:
        """Hold every worker for the 429's Retry-After; True when this call should try again."""
        if is_quota_exhausted(exc):
            return False
        delay = retry_after(exc.response.headers)
        delay = DEFAULT_HOLD_SECONDS if delay is None else delay
        await self.limiter.hold(delay)
        again = refusals <= self.rate_limit_retries and delay <= self.max_inline_wait
        log.warning(
            "llm rate limited by the provider",
            extra={
                "llm_step": prompt.schema_name,
                "model": self.model,
                "retry_after": delay,
                "refusals": refusals,
                "retrying": again,
            },
        )
        return again

    def _failed(self, exc: openai.APIError, prompt: Prompt[M]) -> PaperboyError:
        error = classify(exc)
        log.warning(
            "llm request failed",
            extra={
                "llm_step": prompt.schema_name,
                "model": self.model,
                "error_code": error.code,
                "http_status": getattr(exc, "status_code", None),
            },
        )
        return error

    def _answer(
        self, prompt: Prompt[M], ticket: Ticket, response: Completion, duration: float
    ) -> Answer[M]:
        usage = self._usage(prompt, response)
        output, problem = _parse(prompt, response)
        self._count("completed" if output is not None else "unusable")
        log.info(
            "llm call",
            extra={
                "llm_step": prompt.schema_name,
                "model": self.model,
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "cost_usd": usage.cost_usd,
                "limiter_wait_s": round(ticket.waited, 3),
                "duration_s": round(duration, 3),
                "truncated": response.truncated,
                "from_reasoning": response.from_reasoning,
            },
        )
        return Answer(output, usage, problem, ran_out=output is None and response.truncated)

    def _usage(self, prompt: Prompt[M], response: Completion) -> Usage:
        # Some compatible providers omit usage: count our estimate.
        prompt_tokens = response.prompt_tokens
        if prompt_tokens is None:
            prompt_tokens = prompt.estimated_tokens() - prompt.max_tokens
        completion_tokens = response.completion_tokens
        if completion_tokens is None:
            completion_tokens = math.ceil(len(response.content or "") / 4)
        return Usage(
            llm_requests=1,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=self.prices.cost(self.model, prompt_tokens, completion_tokens),
        )

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.inc("paperboy_llm_requests", outcome=outcome)

    def _observe_wait(self, ticket: Ticket) -> None:
        if self.metrics is not None:
            self.metrics.observe("paperboy_ratelimit_wait_seconds", ticket.waited)

    def _fell_back(self, step: str, problem: str, item_id: str | None = None) -> None:
        log.warning(
            "llm output unusable; using the offline step",
            extra={"llm_step": step, "model": self.model, "reason": problem, "item_id": item_id},
        )


def _parse(prompt: Prompt[M], response: Completion) -> tuple[M | None, str | None]:
    if response.refusal:
        return None, "refusal"
    if not response.content or not response.content.strip():
        return None, "truncated" if response.truncated else "empty"
    try:
        return prompt.output.model_validate_json(response.content), None
    except ValidationError as exc:
        invalid_json = any(error["type"] == "json_invalid" for error in exc.errors())
        return None, "invalid_json" if invalid_json else "schema_mismatch"


def _picks(output: RankingOutput, shortlisted: list[ScoredItem], top_n: int) -> list[Pick]:
    """The model's picks among the candidates: unknown and repeated ids dropped, best first."""
    items = {scored.item.item_id: scored.item for scored in shortlisted}
    chosen: dict[str, float] = {}
    for entry in output.picks:
        if entry.id in items and entry.id not in chosen:
            chosen[entry.id] = min(max(entry.relevance, 0.0), 1.0)
    dropped = len(output.picks) - len(chosen)
    if dropped:
        log.warning("llm ranking named unknown or repeated ids", extra={"dropped": dropped})
    best = sorted(chosen.items(), key=lambda pair: -pair[1])[:top_n]  # stable: ties keep order
    return [
        Pick(item=items[item_id], relevance=round(relevance, 3), rank=position)
        for position, (item_id, relevance) in enumerate(best, start=1)
    ]


def _analysis(output: AnalysisOutput) -> Analysis | None:
    fields = {name: without_nul(text).strip() for name, text in output.model_dump().items()}
    if not all(fields.values()):
        return None
    return Analysis(**{name: offline.clip(text, ANALYSIS_CHARS) for name, text in fields.items()})


def _highlights(output: HighlightsOutput) -> list[Highlight]:
    found = [
        Highlight(
            title=offline.clip(without_nul(h.title).strip(), HIGHLIGHT_TITLE_CHARS),
            insight=offline.clip(without_nul(h.insight).strip(), HIGHLIGHT_INSIGHT_CHARS),
            type=h.type,
        )
        for h in output.highlights
    ]
    return [h for h in found if h.title and h.insight][:MAX_HIGHLIGHTS]
