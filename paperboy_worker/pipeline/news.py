"""News candidates from NewsAPI's `/v2/everything`, and the per-reader query that selects them."""

from __future__ import annotations

import hashlib
import html
import itertools
import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any
from urllib.parse import urlsplit

import httpx

from paperboy_worker.pipeline.items import Item, without_nul
from paperboy_worker.pipeline.shortlist import STOPWORDS
from paperboy_worker.pipeline.sources import merge_items
from shared.errors import PaperboyError, PermanentError, TransientError
from shared.httpjson import json_object
from shared.models import NOT_SPECIFIED, UserInfo
from shared.retry import is_retryable_status, retry_after
from shared.settings import Settings

log = logging.getLogger("paperboy.news")

EVERYTHING = "everything"
API_VERSION = "v2"
PAGE_SIZE = 100  # NewsAPI's maximum; a day is one request either way
MAX_QUERY_CHARS = 500  # NewsAPI refuses longer `q` values
MAX_TERMS = 6
MAX_PHRASE_WORDS = 3  # a longer exact phrase from someone's goals rarely appears in a headline
MAX_CLAUSE_WORDS = 4
MAX_WORD_CHARS = 40
REMOVED = "[Removed]"  # NewsAPI's placeholder for an article its publisher withdrew

_AUTH_CODES = frozenset({"apiKeyInvalid", "apiKeyMissing", "apiKeyDisabled"})
_RATE_CODES = frozenset({"rateLimited", "apiKeyExhausted"})
# Words that say what a reader wants rather than what about; as news keywords they match anything.
_FILLER_TEXT = """
    want wants interested interest research researcher work working works latest keep track
    follow following learn know like understand especially particularly including related
    topic topics area areas field fields news recent today day daily plus etc eg ie various
"""
_GOAL_FILLER = frozenset(_FILLER_TEXT.split())
_WORD = re.compile(r"[^\W_]+(?:-[^\W_]+)*")
_QUOTED = re.compile(r'(?:-|\bnot\s+)?"([^"]*)"', re.IGNORECASE)
_EXCLUDED = re.compile(r"(?:^|\s)-\S+|\b(?:not|except|without)\b.*", re.IGNORECASE)
_CLAUSE = re.compile(r"[^\w\s\"-]+|\s+or\s+", re.IGNORECASE)
_TRUNCATION = re.compile(r"\s*\[\+\d+ chars\]\s*$")
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_SPACE = re.compile(r"\s+")


async def fetch_news(
    http: httpx.AsyncClient, settings: Settings, query: str, day: date
) -> list[Item]:
    """English articles of `day` (UTC) matching `query`, most relevant first."""
    if settings.newsapi_key is None:
        raise PermanentError("News needs NEWSAPI_KEY", code="news_auth")
    q = bounded_query(query)
    if not q:
        return []
    params: dict[str, str | int] = {
        "q": q,
        # A bare date in `to` means its midnight, which would leave an empty window.
        "from": f"{day.isoformat()}T00:00:00",
        "to": f"{day.isoformat()}T23:59:59",
        "sortBy": "relevancy",
        "pageSize": PAGE_SIZE,
        **filters(settings),
    }
    # The key goes in a header: URLs end up in logs and exception messages.
    headers = {"X-Api-Key": settings.newsapi_key.get_secret_value()}
    url = everything_url(settings.newsapi_base_url)
    try:
        response = await http.get(url, params=params, headers=headers)
    except httpx.HTTPError as exc:
        raise TransientError(f"NewsAPI unreachable: {exc!r}", code="source_unavailable") from exc
    body = json_object(response)
    articles = body.get("articles")
    if response.status_code != 200 or body.get("status") != "ok" or not isinstance(articles, list):
        raise _error(response, body)
    # The same URL can come back twice (syndication); the first, more relevant, one stays.
    items = merge_items([[item for item in map(article_item, articles) if item is not None]])
    log.info("news fetched", extra={"day": day.isoformat(), "articles": len(items)})
    return items


def everything_url(base_url: str) -> str:
    """`/v2/everything` under `base_url`, whether that names the host or the `/v2` base
    NewsAPI's documentation gives (or the endpoint itself)."""
    base = base_url.rstrip("/")
    if base.endswith(f"/{API_VERSION}/{EVERYTHING}"):
        return base
    if base.endswith(f"/{API_VERSION}"):
        return f"{base}/{EVERYTHING}"
    return f"{base}/{API_VERSION}/{EVERYTHING}"


def filters(settings: Settings) -> dict[str, str]:
    """The old service's optional NewsAPI filters as request parameters; unset ones left out."""
    values = {
        "language": settings.news_language.strip(),
        "sources": _comma_list(settings.news_sources),
        "excludeDomains": _comma_list(settings.news_exclude_domains),
    }
    return {name: value for name, value in values.items() if value}


def stored_category(settings: Settings, query: str) -> str:
    """The `daily_sources` category one query's articles are stored under.

    The same query with the same filters is the same NewsAPI answer, so the digests of every
    reader who asks it share one fetch; a changed filter is a different answer.
    """
    parts = (bounded_query(query), *sorted(filters(settings).items()))
    digest = hashlib.sha1(repr(parts).encode(), usedforsecurity=False).hexdigest()[:16]
    return f"news:{digest}"


def news_reader(profile: UserInfo) -> UserInfo:
    """The reader news is ranked for: their news interest, when they gave one, is what counts."""
    interest = (profile.news_interest or "").strip()
    if not interest:
        return profile
    return UserInfo(name=profile.name, goals=interest, news_interest=interest)


def article_item(article: object) -> Item | None:
    """A NewsAPI article as a news item; withdrawn articles and ones without a web URL are None."""
    if not isinstance(article, Mapping):
        return None
    url = _string(article.get("url")).strip()
    title = _clean(_string(article.get("title")))
    source = article.get("source")
    source_name = _clean(_string(source.get("name"))) if isinstance(source, Mapping) else ""
    if not title or REMOVED in (title, source_name) or not _is_web_url(url):
        return None
    author = _clean(_string(article.get("author")))
    return Item(
        item_id=news_id(url),
        kind="news",
        title=title,
        abstract=_abstract(_string(article.get("description")), _string(article.get("content"))),
        url=url,
        source=source_name or None,
        authors=[author] if author else [],
        published=_string(article.get("publishedAt")) or None,
    )


def news_id(url: str) -> str:
    """A stable id for an article: the same URL is the same article on every day's fetch."""
    return "news:" + hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()[:16]


def news_query(profile_news_interest: str | None, goals: str) -> str:
    """The NewsAPI `q` for one reader: their news interest, else the key phrases of their goals.

    Terms are OR'ed; the words of one interest clause must all appear, a goal phrase is matched
    exactly. User text never reaches NewsAPI's operators: words are lowercased (so `AND`, `OR`,
    `NOT` are plain words, and stopwords anyway), symbols dropped, quotes rebuilt.
    """
    terms = _interest_terms(profile_news_interest or "")
    if not terms and goals.strip() != NOT_SPECIFIED:
        terms = _goal_terms(goals)
    return _join(terms[:MAX_TERMS])


def bounded_query(query: str) -> str:
    """`query` on one line and within NewsAPI's length limit, cut between terms if it must be."""
    text = _SPACE.sub(" ", "".join(ch if ch.isprintable() else " " for ch in query)).strip()
    if len(text) <= MAX_QUERY_CHARS:
        return text
    return _join(text.split(" OR ")) or text[:MAX_QUERY_CHARS].replace('"', "").strip()


def _interest_terms(text: str) -> list[str]:
    # Exclusions ("-crypto", "NOT crypto") are dropped: as plain words they would ask for crypto.
    quoted = [m[1] for m in _QUOTED.finditer(text) if m[0].startswith('"')]
    clauses = (_EXCLUDED.sub("", clause) for clause in _clauses(_QUOTED.sub(",", text)))
    terms = [_phrase(_words(q)) for q in quoted]
    terms += [_all_of(_words(clause)[:MAX_CLAUSE_WORDS]) for clause in clauses]
    return _distinct(terms)


def _goal_terms(text: str) -> list[str]:
    # Consecutive content words are usually one idea: "question answering", "language models".
    runs = (run for clause in _clauses(text) for run in _content_runs(clause))
    counts = Counter(_phrase(chunk) for run in runs for chunk in _even_chunks(run))
    # Repeated ideas first, then phrases before lone words (more specific); else text order.
    return _distinct(sorted(counts, key=lambda phrase: (-counts[phrase], " " not in phrase)))


def _even_chunks(run: list[str]) -> list[list[str]]:
    count = math.ceil(len(run) / MAX_PHRASE_WORDS)
    cuts = [len(run) * i // count for i in range(count + 1)]
    return [run[a:b] for a, b in itertools.pairwise(cuts)]


def _clauses(text: str) -> list[str]:
    return _CLAUSE.split(text.replace('"', " ").replace("'", "").replace("\u2019", ""))


def _content_runs(clause: str) -> list[list[str]]:
    runs: list[list[str]] = [[]]
    for word in _words(clause, keep_stopwords=True):
        if word in STOPWORDS or word in _GOAL_FILLER:
            runs.append([])
        else:
            runs[-1].append(word)
    return [run for run in runs if run]


def _words(text: str, *, keep_stopwords: bool = False) -> list[str]:
    words = _WORD.findall(text.lower())
    return [w for w in words if len(w) <= MAX_WORD_CHARS and (keep_stopwords or w not in STOPWORDS)]


def _phrase(words: list[str]) -> str:
    if len(words) == 1 and "-" not in words[0]:
        return words[0]
    return f'"{" ".join(words)}"' if words else ""


def _all_of(words: list[str]) -> str:
    if len(words) <= 1:
        return _phrase(words)
    return "(" + " AND ".join(_phrase([w]) for w in words) + ")"


def _distinct(terms: Iterable[str]) -> list[str]:
    # A lone letter or number matches nearly every article.
    return [t for t in dict.fromkeys(terms) if len(t) > 1 and not t.strip('"').isdigit()]


def _join(terms: Iterable[str]) -> str:
    query = ""
    for term in terms:
        candidate = f"{query} OR {term}" if query else term
        if len(candidate) <= MAX_QUERY_CHARS:
            query = candidate
    return query


def _abstract(description: str, content: str) -> str:
    # NewsAPI's `content` is the article's first ~200 characters, often the description again.
    description, content = _clean(description), _clean(_TRUNCATION.sub("", content))
    core = content.rstrip("….").strip()
    if not core or core in description:
        return description
    if not description or description.rstrip("….").strip() in content:
        return content
    return f"{description} {content}"


def _error(response: httpx.Response, body: Mapping[str, Any]) -> PaperboyError:
    code = _string(body.get("code"))
    status = response.status_code
    detail = without_nul(_string(body.get("message")))[:200]  # it ends up in the stored error
    message = f"NewsAPI answered {status} {without_nul(code)}: {detail}".strip()
    if code in _AUTH_CODES or status == 401:
        return PermanentError(message, code="news_auth")
    if code in _RATE_CODES or status == 429:
        return TransientError(
            message, code="news_rate_limited", retry_after=retry_after(response.headers)
        )
    if code == "unexpectedError" or status == 200 or is_retryable_status(status):
        # 200 here means an ok status with a body we cannot read: a broken proxy, not our query.
        return TransientError(
            message, code="source_unavailable", retry_after=retry_after(response.headers)
        )
    return PermanentError(message, code="news_rejected")


def _is_web_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in {"http", "https"} and bool(parts.netloc)


def _comma_list(value: str | None) -> str:
    return ",".join(part.strip() for part in (value or "").split(",") if part.strip())


def _string(value: object) -> str:
    return value if isinstance(value, str) else ""


def _clean(text: str) -> str:
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", text))).strip()
