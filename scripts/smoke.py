"""`make smoke`: one ranking, one analysis and one highlights call against the configured LLM
provider (LLM_PROVIDER, its key and model, OPENAI_BASE_URL, LLM_API_MODE, the budgets), on the
bundled sample papers; prints each call's usage and cost. Exits 1 when a call fails or its
answer is unusable (the digest would be `degraded`), 2 when no provider is configured.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from paperboy_worker.llm import LLMWriter, llm_budgets, llm_client, llm_model
from paperboy_worker.pipeline.arxiv_feed import load_sample
from paperboy_worker.pipeline.shortlist import shortlist
from paperboy_worker.pipeline.writer import Step
from shared.errors import PaperboyError
from shared.models import Usage, UserInfo
from shared.ratelimit import Ticket
from shared.settings import Settings, load_settings

PROFILE = UserInfo(
    name="Smoke Test",
    title="ML engineer",
    goals="large language models, retrieval-augmented generation, evaluation",
)
CATEGORIES = ["cs.AI", "cs.LG", "cs.CL"]
CANDIDATES = 10
TOP_N = 3


class Unlimited:
    """Three calls need no rate limiter; the writer still asks one for every call."""

    async def acquire(self, tokens: int, *, max_wait: float | None = None) -> Ticket:
        return Ticket("smoke", tokens, time.time(), 0.0)

    async def settle(self, ticket: Ticket, actual_tokens: int | None = None) -> None:
        pass

    async def hold(self, seconds: float) -> float:
        await asyncio.sleep(seconds)  # a 429 during a smoke test: wait it out, then retry
        return time.time()


def line(step: str, result: Step[Any]) -> str:
    usage = result.usage
    state = "DEGRADED (offline fallback)" if result.degraded else "ok"
    return (
        f"{step:<11} {state:<28} calls {usage.llm_requests}  prompt {usage.prompt_tokens:>6}  "
        f"completion {usage.completion_tokens:>6}  cost ${usage.cost_usd:.6f}"
    )


async def smoke(settings: Settings) -> int:
    client = llm_client(settings, timeout=settings.llm_timeout_seconds)
    if client is None:
        print("LLM_PROVIDER=offline: no provider to call; set LLM_PROVIDER and its key.")
        return 2
    model = llm_model(settings)
    writer = LLMWriter(
        client,
        model,
        Unlimited(),
        prices=settings.llm_prices,
        api_mode=settings.llm_api_mode,
        budgets=llm_budgets(settings),
    )
    print(f"provider {settings.llm_provider}  model {model}  mode {settings.llm_api_mode}")
    try:
        candidates = shortlist(
            await load_sample(settings.arxiv_sample_path, CATEGORIES), PROFILE, CANDIDATES
        )
        ranked = await writer.rank(candidates, PROFILE, TOP_N)
        print(line("ranking", ranked))
        analysed = await writer.analyse(ranked.value[0], PROFILE)
        print(line("analysis", analysed))
        picks = [ranked.value[0].model_copy(update={"analysis": analysed.value})]
        highlighted = await writer.highlights([*picks, *ranked.value[1:]], PROFILE)
        print(line("highlights", highlighted))
    except PaperboyError as exc:
        print(f"FAILED: {exc.code}: {exc.message}")
        return 1
    finally:
        await writer.close()
        await client.close()
    steps: list[Step[Any]] = [ranked, analysed, highlighted]
    total = sum((step.usage for step in steps), Usage())
    print(
        f"{'total':<11} {'':<28} calls {total.llm_requests}  prompt {total.prompt_tokens:>6}  "
        f"completion {total.completion_tokens:>6}  cost ${total.cost_usd:.6f}"
    )
    if writer.reasoning_models:
        print(
            f"{model} reasons: its calls need LLM_REASONING_MAX_TOKENS "
            f"({settings.llm_reasoning_max_tokens}); set LLM_REASONING=true to skip the first try."
        )
    print(f"first pick: {ranked.value[0].item.title}")
    print(f"its takeaway: {analysed.value.key_takeaway}")
    for highlight in highlighted.value:
        print(f"highlight ({highlight.type}): {highlight.title}: {highlight.insight}")
    return 1 if any(step.degraded for step in steps) else 0


def main() -> None:
    sys.exit(asyncio.run(smoke(load_settings())))


if __name__ == "__main__":
    main()
