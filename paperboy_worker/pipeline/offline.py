"""The deterministic stand-in for the LLM: lexical ranking and extractive analysis.

Used when `LLM_PROVIDER=offline` and as the fallback when the provider fails, so every function
here is pure, fast and never raises on odd input.
"""

from __future__ import annotations

import re
from collections import Counter

from paperboy_worker.pipeline.items import Analysis, Highlight, Item, Pick, ScoredItem
from paperboy_worker.pipeline.shortlist import tokenize
from shared.models import UserInfo

SUMMARY_CHARS = 400
HIGHLIGHT_TITLE_CHARS = 80
NOTHING_MATCHED = "Nothing in today's sources matched your profile closely."
MAX_NAMED_TERMS = 5

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
_RAW_WORD = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")


def rank(shortlisted: list[ScoredItem], top_n: int) -> list[Pick]:
    """The `top_n` best-scoring items as picks; relevance is the score relative to the best."""
    seen: set[str] = set()
    ordered: list[ScoredItem] = []
    for scored in sorted(shortlisted, key=lambda s: -s.score):
        if scored.score > 0 and scored.item.item_id not in seen:
            seen.add(scored.item.item_id)
            ordered.append(scored)
    ordered = ordered[: max(top_n, 0)]
    if not ordered:
        return []
    best = ordered[0].score
    return [
        Pick(item=s.item, relevance=round(min(s.score / best, 1.0), 3), rank=position)
        for position, s in enumerate(ordered, start=1)
    ]


def analyse(item: Item, profile: UserInfo) -> Analysis:
    """An extractive analysis: lead sentences, the profile terms matched, the most on-topic line."""
    sentences = split_sentences(item.abstract)
    summary_sentences = _lead(sentences)
    summary = clip(" ".join(summary_sentences), SUMMARY_CHARS) if sentences else item.title
    rest = sentences[len(summary_sentences) :] or sentences
    return Analysis(
        summary=summary,
        why_it_matters=_why_it_matters(item, profile),
        key_takeaway=clip(_key_sentence(rest, profile) or item.title, SUMMARY_CHARS),
    )


def highlights(picks: list[Pick], profile: UserInfo) -> list[Highlight]:
    """Two to four highlights of the day's picks (one when there are none)."""
    if not picks:
        return [Highlight(title="A quiet day", insight=NOTHING_MATCHED, type="trend")]
    top = min(picks, key=lambda p: p.rank)
    found = [
        Highlight(title="Today's picks", insight=_count_line(picks), type="trend"),
        Highlight(
            title=clip(top.item.title, HIGHLIGHT_TITLE_CHARS),
            insight=clip(_top_insight(top), SUMMARY_CHARS),
            type=top.item.kind,
        ),
    ]
    themes = _shared_terms(picks, profile)
    if themes:
        found.append(
            Highlight(title="Common threads", insight=f"{', '.join(themes)}.", type="trend")
        )
    categories = Counter(p.item.primary_category for p in picks if p.item.primary_category)
    if categories:
        names = [name for name, _ in categories.most_common(2)]
        insight = f"Mostly from {' and '.join(names)}."
        found.append(Highlight(title="Where they come from", insight=insight, type="trend"))
    return found


def split_sentences(text: str) -> list[str]:
    """Sentences of an abstract, split on end punctuation followed by a capital or digit."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def clip(text: str, limit: int) -> str:
    """`text` cut at a word boundary to at most `limit` characters, marked with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:-")
    return cut + "…"


def profile_words(profile: UserInfo) -> list[tuple[str, list[str]]]:
    """The profile's words (hyphenated compounds kept whole), each with its searchable terms."""
    words = (word.lower() for word in _RAW_WORD.findall(profile.query_text()))
    pairs = ((word, tokenize(word.replace("-", " "))) for word in words)
    # Bare numbers ("2" in "top 2 papers") are not interests a reader would recognise.
    return [(word, terms) for word, terms in pairs if terms and not word.isdigit()]


def matched_terms(item: Item, profile: UserInfo) -> list[str]:
    """The profile words the item's title or abstract mention; partly matched compounds by part."""
    present = set(tokenize(f"{item.title} {item.abstract}"))
    named: list[str] = []
    for word, terms in profile_words(profile):
        hits = [term for term in terms if term in present]
        named.extend([word] if hits == terms else hits)
    return list(dict.fromkeys(named))


def _lead(sentences: list[str]) -> list[str]:
    if len(sentences) >= 2 and len(sentences[0]) + len(sentences[1]) < SUMMARY_CHARS:
        return sentences[:2]
    return sentences[:1]


def _why_it_matters(item: Item, profile: UserInfo) -> str:
    matched = matched_terms(item, profile)[:MAX_NAMED_TERMS]
    if matched:
        return f"It matches your interest in {_join(matched)}."
    area = item.primary_category or item.source or "today's sources"
    return f"It does not match your stated goals directly; it is one of today's items in {area}."


def _key_sentence(sentences: list[str], profile: UserInfo) -> str | None:
    if not sentences:
        return None
    terms = {term for _, word_terms in profile_words(profile) for term in word_terms}
    overlaps = [len(terms.intersection(tokenize(sentence))) for sentence in sentences]
    best = max(overlaps)
    return sentences[overlaps.index(best)] if best else sentences[-1]


def _shared_terms(picks: list[Pick], profile: UserInfo) -> list[str]:
    counts = Counter(word for pick in picks for word in matched_terms(pick.item, profile))
    return [word for word, count in counts.most_common(3) if count >= 2]


def _top_insight(top: Pick) -> str:
    if top.analysis is not None:
        return top.analysis.key_takeaway
    return "Ranked first for your profile today."


def _count_line(picks: list[Pick]) -> str:
    papers = sum(1 for pick in picks if pick.item.kind == "paper")
    counts = ((papers, "paper"), (len(picks) - papers, "news story"))
    parts = [_plural(count, noun) for count, noun in counts if count]
    return f"{' and '.join(parts)} picked for you today."


def _plural(count: int, noun: str) -> str:
    if count == 1:
        return f"1 {noun}"
    return f"{count} {noun[:-1] + 'ies' if noun.endswith('y') else noun + 's'}"


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"
