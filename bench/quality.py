"""Figure 8: does the digest pick the right items? Recall@k on a generated corpus with planted
relevant papers and news.

For each of four reader profiles, a day's corpus is generated (seeded, so every run sees the
same one; sizes below): papers and news items on many topics, among them five papers and five
news items written about that reader's interests in varied words (each uses only some of the
profile's terms, and a synonym), near misses that share a single word with the profile in
another context, and items planted for the other readers. The pipeline's own steps then pick
five of each kind, as a digest does: the BM25 shortlist (RANKING_INPUT_MAX_ARTICLES
candidates), then

- the offline path: `offline.rank` on the shortlist;
- the LLM path: `LLMWriter.rank` against the local OpenAI-compatible provider
  (`tests.fake_openai`), through the real client and the Redis rate limiter. That provider
  picks the first candidates in the order given, so this path measures what surrounds a model
  (ids, structured output, validation, fallbacks), not a model's judgement.

Recall@K is the share of the planted items among the K picks; the shortlist's recall (planted
items among the candidates at all) bounds what any model can pick.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import SecretStr
from redis.asyncio import Redis

from bench.servers import Bench
from paperboy_worker.llm import LLMWriter, llm_client
from paperboy_worker.pipeline import offline
from paperboy_worker.pipeline.items import Item, Pick, ScoredItem
from paperboy_worker.pipeline.shortlist import shortlist
from shared import keys
from shared.models import UserInfo
from shared.ratelimit import RateLimiter
from shared.settings import Settings
from tests.fake_openai import FakeOpenAI

K = 5
PAPERS = 400
NEWS = 80
PLANTED = 5
NEAR_MISSES = 10
RANKING_INPUT = 40  # the shipped RANKING_INPUT_MAX_ARTICLES
SEED = 20261122
Kind = Literal["paper", "news"]


@dataclass(frozen=True)
class Topic:
    name: str
    goals: str
    news_interest: str
    terms: tuple[str, ...]  # what planted items are written with (the profile's words first)
    synonyms: tuple[str, ...]  # the same ideas in words the profile does not use


TOPICS = (
    Topic(
        "molecules",
        "graph neural networks for molecular property prediction in drug discovery",
        "AI drug discovery",
        ("graph neural network", "molecular property", "drug discovery", "molecule"),
        ("message passing", "binding affinity", "small-molecule screening", "ligand"),
    ),
    Topic(
        "rag",
        "retrieval-augmented generation and evaluation of large language models",
        "large language model products",
        ("retrieval-augmented generation", "large language model", "evaluation", "retrieval"),
        ("dense passage index", "grounded answers", "benchmark", "chatbot"),
    ),
    Topic(
        "robots",
        "reinforcement learning for robot manipulation from demonstrations",
        "robotics industry",
        ("reinforcement learning", "robot manipulation", "demonstrations", "robot"),
        ("policy gradient", "grasping", "imitation", "dexterous hand"),
    ),
    Topic(
        "privacy",
        "differential privacy in federated learning",
        "data privacy regulation",
        ("differential privacy", "federated learning", "privacy", "federated"),
        ("secure aggregation", "on-device training", "noise calibration", "data protection"),
    ),
)
FILLER = (
    "transformer",
    "vision",
    "speech recognition",
    "time series forecasting",
    "optimization",
    "compiler",
    "recommendation",
    "computer graphics",
    "quantum circuits",
    "climate model",
    "auction design",
    "theorem proving",
    "image segmentation",
    "sparse matrices",
    "wireless networks",
    "protein folding",
)
VERBS = ("We study", "We propose", "This work examines", "We introduce", "We revisit")
OUTCOMES = (
    "Experiments show consistent gains.",
    "Results improve on strong baselines.",
    "The method scales to large datasets.",
    "We release code and data.",
)


@dataclass
class Case:
    topic: str
    kind: Kind
    planted: int
    shortlisted: int  # planted items among the RANKING_INPUT candidates
    offline_hits: int
    llm_hits: int


@dataclass
class Result:
    cases: list[Case] = field(default_factory=list)
    k: int = K
    papers: int = PAPERS
    news: int = NEWS
    ranking_input: int = RANKING_INPUT
    llm_calls: int = 0
    llm_degraded: int = 0

    def recall(self, what: Callable[[Case], int], kind: Kind | None = None) -> float:
        chosen = [c for c in self.cases if kind is None or c.kind == kind]
        return sum(what(c) for c in chosen) / max(1, sum(c.planted for c in chosen))


def corpus(topic: Topic, rng: random.Random) -> tuple[list[Item], list[Item], set[str]]:
    """Papers and news for one day, with the planted ids."""
    planted: set[str] = set()
    papers = [_background(rng, "paper", n) for n in range(PAPERS - PLANTED - NEAR_MISSES)]
    news = [_background(rng, "news", n) for n in range(NEWS - PLANTED - NEAR_MISSES)]
    for kind, items in (("paper", papers), ("news", news)):
        for n in range(PLANTED):
            item = _planted(rng, topic, kind, n)  # type: ignore[arg-type]
            planted.add(item.item_id)
            items.append(item)
        items.extend(_near_miss(rng, topic, kind, n) for n in range(NEAR_MISSES))  # type: ignore[arg-type]
        # Other readers' relevant items are today's distractors for this one.
        others = (other for other in TOPICS if other is not topic)
        items.extend(_planted(rng, other, kind, n) for other in others for n in range(2))  # type: ignore[arg-type]
        rng.shuffle(items)
    return papers, news, planted


async def run(bench: Bench, reps: int, log: Callable[[str], None]) -> Result:
    """One pass (the corpus and both paths are deterministic, so repetitions would agree)."""
    result = Result()
    rng = random.Random(SEED)
    redis = Redis.from_url(bench.redis.url())
    name = f"bench-quality-{uuid.uuid4().hex[:8]}"
    limiter = RateLimiter(redis, rpm=10_000, tpm=100_000_000, name=name)
    try:
        with FakeOpenAI() as fake:
            client = llm_client(_settings(fake.url))
            assert client is not None
            writer = LLMWriter(client, "fake-model", limiter)
            for topic in TOPICS:
                await _topic(result, writer, topic, rng)
            await writer.close()
            await client.close()
            result.llm_calls = fake.completions
    finally:
        await redis.delete(keys.ratelimit_log_key(name), keys.ratelimit_tokens_key(name))
        await redis.aclose()
    log(
        f"quality: recall@{K} offline {result.recall(lambda c: c.offline_hits):.0%}, "
        f"LLM {result.recall(lambda c: c.llm_hits):.0%}"
    )
    return result


async def _topic(result: Result, writer: LLMWriter, topic: Topic, rng: random.Random) -> None:
    profile = UserInfo(name="Reader", goals=topic.goals, news_interest=topic.news_interest)
    papers, news, planted = corpus(topic, rng)
    for kind, items in (("paper", papers), ("news", news)):
        candidates = shortlist(items, profile, RANKING_INPUT)
        step = await writer.rank(candidates, profile, K)
        result.llm_degraded += int(step.degraded)
        result.cases.append(
            Case(
                topic=topic.name,
                kind=kind,  # type: ignore[arg-type]
                planted=len({i.item_id for i in items} & planted),
                shortlisted=_hits(candidates, planted),
                offline_hits=_picked(offline.rank(candidates, K), planted),
                llm_hits=_picked(step.value, planted),
            )
        )


def _hits(candidates: list[ScoredItem], planted: set[str]) -> int:
    return sum(1 for s in candidates if s.item.item_id in planted)


def _picked(picks: list[Pick], planted: set[str]) -> int:
    return sum(1 for p in picks[:K] if p.item.item_id in planted)


def _settings(url: str) -> Settings:
    return Settings(
        llm_provider="openai",
        openai_api_key=SecretStr("sk-bench"),
        openai_base_url=url,
        openai_model="fake-model",
    )


def _item(kind: Kind, item_id: str, title: str, abstract: str) -> Item:
    return Item(
        item_id=item_id,
        kind=kind,
        title=title,
        abstract=abstract,
        url=f"https://example.org/{item_id}",
        source="Example News" if kind == "news" else None,
    )


def _background(rng: random.Random, kind: Kind, n: int) -> Item:
    a, b = rng.sample(FILLER, 2)
    abstract = f"{rng.choice(VERBS)} {a} with {b}. {rng.choice(OUTCOMES)}"
    return _item(kind, f"{kind}-bg-{n}", f"{a.capitalize()} meets {b}", abstract)


def _planted(rng: random.Random, topic: Topic, kind: Kind, n: int) -> Item:
    # Two of the profile's terms and one synonym: relevant, but never a copy of the profile.
    first, second = rng.sample(topic.terms, 2)
    other = rng.choice(topic.synonyms)
    filler = rng.choice(FILLER)
    title = f"{first.capitalize()} with {other}"
    abstract = (
        f"{rng.choice(VERBS)} {first} for {second}, using {other} and ideas from {filler}. "
        f"{rng.choice(OUTCOMES)}"
    )
    return _item(kind, f"{kind}-{topic.name}-planted-{n}", title, abstract)


def _near_miss(rng: random.Random, topic: Topic, kind: Kind, n: int) -> Item:
    # One word of a profile term, in an unrelated setting ("graph" in graphics, "learning" in
    # education): the lexical trap a shortlist can fall into.
    word = rng.choice(rng.choice(topic.terms).split())
    a, b = rng.sample(FILLER, 2)
    abstract = f"{rng.choice(VERBS)} {word} in {a} and {b}. {rng.choice(OUTCOMES)}"
    return _item(kind, f"{kind}-{topic.name}-near-{n}", f"{word.capitalize()} in {a}", abstract)
