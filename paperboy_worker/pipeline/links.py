"""Which news links reach a digest: each chosen link is classed from its extraction's evidence.

Broken links never reach a digest. A suspected paywall gives its place to the next best item
that is not one; when none is left, it stays and the email labels it. The publisher itself is
never probed: the extraction's own answer is the only evidence.
"""

from __future__ import annotations

import asyncio
import re

from paperboy_worker.pipeline.extract import Extraction, Extractor
from paperboy_worker.pipeline.items import LinkStatus, Pick

MIN_ARTICLE_CHARS = 100
# A paywall page is short: a long text that mentions subscribing is an article with a footer.
PAYWALL_MAX_CHARS = 1_500
_PAYWALL = re.compile(
    r"subscribe (?:now |today )?to (?:continue|read|keep reading)|subscribers only|"
    r"(?:sign|log) in to (?:continue|read|keep reading)|already a subscriber|"
    r"this (?:article|content) is (?:for|available to) (?:paid )?(?:subscribers|members)|"
    r"create a free account to (?:continue|read)|paywall",
    re.IGNORECASE,
)
_BROKEN = re.compile(
    r"\b(?:404|410)\b|not found|\bgone\b|name or service not known|could not resolve|"
    r"nodename nor servname|\bdns\b|invalid url|no such host",
    re.IGNORECASE,
)


def classify(found: Extraction | None) -> LinkStatus:
    """A link's class from what extracting it showed; no evidence is `unknown`."""
    if found is None:
        return "unknown"
    if found.text is not None:
        text = found.text.strip()
        if _PAYWALL.search(text) and len(text) < PAYWALL_MAX_CHARS:
            return "suspected_paywall"
        return "accessible" if len(text) >= MIN_ARTICLE_CHARS else "unknown"
    if found.failure is not None and _BROKEN.search(found.failure):
        return "broken"
    return "unknown"


async def choose_news(extractor: Extractor, ranked: list[Pick], wanted: int) -> list[Pick]:
    """Up to `wanted` picks of `ranked` (best first), none broken, paywalls last and labelled.

    Links are extracted in rounds, each as large as the places still open, so a digest pays
    for about `wanted` extractions when most links work.
    """
    chosen: list[Pick] = []
    paywalled: list[Pick] = []
    waiting = list(ranked)
    while len(chosen) < wanted and waiting:
        batch, waiting = waiting[: wanted - len(chosen)], waiting[wanted - len(chosen) :]
        for pick in await asyncio.gather(*(_checked(extractor, pick) for pick in batch)):
            status = pick.item.link_status
            if status == "suspected_paywall":
                paywalled.append(pick)
                continue
            if status != "broken":
                chosen.append(pick)
            _count(extractor, pick, kept=status != "broken")
    room = max(0, wanted - len(chosen))
    for place, pick in enumerate(paywalled):
        _count(extractor, pick, kept=place < room)
    kept = chosen + paywalled[:room]
    return [pick.model_copy(update={"rank": rank}) for rank, pick in enumerate(kept, start=1)]


async def _checked(extractor: Extractor, pick: Pick) -> Pick:
    found = await extractor.extract(pick.item.url)
    status = classify(found)
    update: dict[str, object] = {"link_status": status}
    if status == "accessible" and found is not None and found.text:
        update["abstract"] = found.text.strip()  # the full text the analysis reads
    return pick.model_copy(update={"item": pick.item.model_copy(update=update)})


def _count(extractor: Extractor, pick: Pick, *, kept: bool) -> None:
    status = pick.item.link_status or "unknown"
    outcome = "kept" if kept else "dropped"
    extractor.metrics.inc("paperboy_news_links", status=status, outcome=outcome)
