"""Lexical shortlisting: BM25 relevance of each candidate to the profile, best first."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Collection, Sequence

from paperboy_worker.pipeline.items import Item, ScoredItem
from shared.models import UserInfo

K1 = 1.5
B = 0.75
TITLE_WEIGHT = 2

# Function words plus the boilerplate every abstract uses, which says nothing about the topic.
_STOPWORD_TEXT = """
    a about above after all also an and any are as at be been being but by can could did do does
    for from had has have how i if in into is it its me more most my no not of on or our over so
    such than that the their them then there these they this those through to too under up very
    via was we were what when where which while who why will with would you your
    using based new show study propose paper approach method result
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_WORD = re.compile(r"[a-z0-9]+")


def normalise(word: str) -> str:
    """Crude plural stripping so `models` meets `model` and `studies` meets `study`."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """Lowercase alphanumeric terms, stopwords dropped, plurals folded."""
    terms = (normalise(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS)
    return [term for term in terms if term not in STOPWORDS]


def item_terms(item: Item) -> list[str]:
    """The item's indexed terms; the title counts `TITLE_WEIGHT` times."""
    return tokenize(item.title) * TITLE_WEIGHT + tokenize(item.abstract)


def bm25_scores(documents: Sequence[Sequence[str]], query: Sequence[str]) -> list[float]:
    """Okapi BM25 of `query` against each tokenised document (non-negative idf)."""
    if not documents or not query:
        return [0.0] * len(documents)
    average_length = sum(len(doc) for doc in documents) / len(documents) or 1.0
    weights = Counter(query)
    idf = _idf(documents, weights.keys())
    scores = []
    for doc in documents:
        counts = Counter(doc)
        norm = K1 * (1 - B + B * len(doc) / average_length)
        scores.append(
            sum(
                qtf * idf[term] * counts[term] * (K1 + 1) / (counts[term] + norm)
                for term, qtf in weights.items()
                if counts[term]
            )
        )
    return scores


def shortlist(items: Sequence[Item], profile: UserInfo, limit: int) -> list[ScoredItem]:
    """The `limit` items most relevant to `profile`, best first; ties keep feed order."""
    if limit <= 0:
        return []
    query = tokenize(profile.query_text())
    scores = bm25_scores([item_terms(item) for item in items], query)
    order = sorted(range(len(items)), key=lambda i: -scores[i])
    return [ScoredItem(item=items[i], score=scores[i]) for i in order[:limit]]


def _idf(documents: Sequence[Sequence[str]], terms: Collection[str]) -> dict[str, float]:
    total = len(documents)
    frequency = Counter(term for doc in documents for term in set(doc).intersection(terms))
    return {
        term: math.log((total - frequency[term] + 0.5) / (frequency[term] + 0.5) + 1.0)
        for term in terms
    }
