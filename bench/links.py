"""Figure 7: broken and paywalled news links that reach a digest.

Each of the generated digests gets a day of ranked news links, best first, of which a share is
broken (the publisher answers 404) and a share paywalled (a subscription wall), placed by a
seeded random draw. Tavily Extract is a local stand-in (an in-process HTTP transport that answers
from the link's name); the bench's Redis holds the extraction pause and the shared extractions.
Each digest wants the same number of news items. Counted: links of each class that reach the
digest through the link checks (`paperboy_worker.pipeline.links.choose_news`), and the same for
the first links of the ranking as the old service sent them. A paywall is unavoidable in a digest
when fewer working links were ranked than it wants.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from redis.asyncio import Redis

from bench.servers import Bench
from paperboy_worker.pipeline.extract import Extractor
from paperboy_worker.pipeline.items import Item, Pick
from paperboy_worker.pipeline.links import choose_news
from shared.metrics import Metrics
from shared.settings import Settings

DIGESTS = 40
RANKED = 10  # ranked links per digest: twice the wanted, as the pipeline asks the ranker
WANTED = 5
BROKEN_SHARE = 0.2
PAYWALL_SHARE = 0.15
SEED = 20261202
TAVILY = "http://tavily.bench"
ARTICLE = "The committee published its findings on chip exports this morning. " * 10
PAYWALL = "Subscribe to continue reading. Already a subscriber? Sign in."


@dataclass
class Rep:
    digests: int
    wanted: int
    delivered: int  # news links in the digests, with the link checks
    broken: int  # broken links in the digests, with the checks
    paywalled: int  # paywalled links in the digests (labelled), with the checks
    paywalled_unavoidable: int  # of those, digests had no working link left to replace them
    old_broken: int  # the same for the first `wanted` links, unchecked
    old_paywalled: int
    extract_requests: int


@dataclass
class Result:
    digests: int = DIGESTS
    ranked: int = RANKED
    wanted: int = WANTED
    broken_share: float = BROKEN_SHARE
    paywall_share: float = PAYWALL_SHARE
    reps: list[Rep] = field(default_factory=list)


def _links(draw: random.Random, digest: int) -> list[Pick]:
    picks = []
    for rank in range(1, RANKED + 1):
        roll = draw.random()
        kind = (
            "gone"
            if roll < BROKEN_SHARE
            else "paid"
            if roll < BROKEN_SHARE + PAYWALL_SHARE
            else "ok"
        )
        item = Item(
            item_id=f"news:{digest}-{rank}",
            kind="news",
            title=f"Story {rank} of digest {digest}",
            abstract="Preview.",
            url=f"https://news.bench/{digest}/{rank}/{kind}",
        )
        picks.append(Pick(item=item, relevance=1 - rank / (RANKED + 1), rank=rank))
    return picks


def _tavily(counter: list[int]) -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        counter[0] += 1
        url = json.loads(request.content)["urls"][0]
        kind = url.rsplit("/", 1)[-1]
        if kind == "gone":
            failed = [{"url": url, "error": "404 Not Found"}]
            return httpx.Response(200, json={"results": [], "failed_results": failed})
        text = PAYWALL if kind == "paid" else ARTICLE
        return httpx.Response(200, json={"results": [{"url": url, "raw_content": text}]})

    return answer


def _kind(pick: Pick) -> str:
    return pick.item.url.rsplit("/", 1)[-1]


async def _rep(bench: Bench, seed: int) -> Rep:
    bench.redis.flush()
    draw = random.Random(seed)
    requests = [0]
    settings = Settings(tavily_api_key="bench", tavily_base_url=TAVILY)
    redis = Redis.from_url(bench.redis.url())
    rep = Rep(DIGESTS, WANTED, 0, 0, 0, 0, 0, 0, 0)
    async with httpx.AsyncClient(transport=httpx.MockTransport(_tavily(requests))) as http:
        extractor = Extractor(http, redis, settings, Metrics(redis))
        for digest in range(DIGESTS):
            ranked = _links(draw, digest)
            chosen = await choose_news(extractor, ranked, WANTED)
            kinds = [_kind(p) for p in chosen]
            working = sum(_kind(p) == "ok" for p in ranked)
            old = [_kind(p) for p in ranked[:WANTED]]
            rep.delivered += len(chosen)
            rep.broken += kinds.count("gone")
            rep.paywalled += kinds.count("paid")
            rep.paywalled_unavoidable += min(kinds.count("paid"), max(0, WANTED - working))
            rep.old_broken += old.count("gone")
            rep.old_paywalled += old.count("paid")
    await redis.aclose()
    rep.extract_requests = requests[0]
    return rep


async def run(bench: Bench, reps: int, log: Callable[[str], None]) -> Result:
    result = Result()
    for i in range(reps):
        result.reps.append(await _rep(bench, SEED + i))
        last = result.reps[-1]
        log(f"  links rep {i + 1}: {last.broken} broken, {last.paywalled} paywalled reached")
    return result
