"""Render a digest as one email-safe HTML document.

The template lays the digest out in tables 600 px wide; its class styles (`digest.css`) are
inlined onto the elements by css-inline, because most mail clients drop `<style>` blocks. Only
the media queries (narrow screens, dark mode) stay in a `<style>` block, where the clients that
honour them read them. Every value from a source or a model is escaped by Jinja's autoescape,
and a link is kept only when it is http(s).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import quote, urlsplit

import css_inline
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from paperboy_worker.pipeline.items import Highlight, Pick
from shared.models import UserInfo

SHOWN_AUTHORS = 3
QUICK_SCAN_CHARS = 120
# Bands and labels by score out of 100, as the old email had them.
DIRECTLY_RELEVANT = 80
EXPAND_KNOWLEDGE = 60
CRITICAL = 90
IMPORTANT = 80
# Minutes a reader spends on a pick in the digest, and would have spent finding it.
READ_MINUTES = {"paper": 5, "news": 3}
SAVED_MINUTES_PER_PICK = 15

_TEMPLATES = Path(__file__).resolve().parent / "templates"
_ENV = Environment(
    loader=FileSystemLoader(_TEMPLATES),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_INLINER = css_inline.CSSInliner(
    keep_style_tags=True,  # the template's one <style> holds only media queries
    load_remote_stylesheets=False,
    extra_css=(_TEMPLATES / "digest.css").read_text(encoding="utf-8"),
)


@dataclass(frozen=True)
class Section:
    heading: str
    picks: list[Pick]
    quick: bool = False  # a one-line entry per pick


@dataclass(frozen=True)
class Stats:
    papers: int
    news: int
    reading_minutes: int
    saved_minutes: int


@dataclass(frozen=True)
class Feedback:
    """Where the call to action sends a reader: a form, else a mail address."""

    url: str | None = None
    email: str | None = None

    def link(self) -> str | None:
        if self.url:
            return safe_url(self.url)
        if self.email and "@" in self.email:
            return "mailto:" + quote(self.email.strip(), safe="@") + "?subject=Paperboy%20feedback"
        return None


def render_digest(
    profile: UserInfo,
    source_date: date,
    picks: list[Pick],
    highlights: list[Highlight],
    *,
    degraded: bool = False,
    feedback: Feedback | None = None,
) -> str:
    """The digest for `profile` as a complete HTML document, picks in bands by score."""
    template = _ENV.get_template("digest.html")
    html = template.render(
        profile=profile,
        day=f"{source_date:%A} {source_date.day} {source_date:%B %Y}",
        iso_day=source_date.isoformat(),
        sections=sections(picks),
        stats=stats(picks),
        highlights=highlights,
        degraded=degraded,
        feedback_link=(feedback or Feedback()).link(),
    )
    return "<!DOCTYPE html>\n" + _INLINER.inline(html)


def sections(picks: list[Pick]) -> list[Section]:
    """Picks in the three bands, each in rank order; empty bands are left out."""
    ordered = sorted(picks, key=lambda pick: pick.rank)
    bands = [
        Section(
            "Directly relevant to your work", [p for p in ordered if score(p) >= DIRECTLY_RELEVANT]
        ),
        Section(
            "Expand your knowledge",
            [p for p in ordered if EXPAND_KNOWLEDGE <= score(p) < DIRECTLY_RELEVANT],
        ),
        Section("Quick scan", [p for p in ordered if score(p) < EXPAND_KNOWLEDGE], quick=True),
    ]
    return [band for band in bands if band.picks]


def stats(picks: list[Pick]) -> Stats:
    papers = sum(1 for pick in picks if pick.item.kind == "paper")
    news = len(picks) - papers
    return Stats(
        papers=papers,
        news=news,
        reading_minutes=READ_MINUTES["paper"] * papers + READ_MINUTES["news"] * news,
        saved_minutes=SAVED_MINUTES_PER_PICK * len(picks),
    )


def score(pick: Pick) -> int:
    """The pick's relevance out of 100."""
    return round(pick.relevance * 100)


def label(pick: Pick) -> str | None:
    """CRITICAL or IMPORTANT for the highest scores; nothing below."""
    if score(pick) >= CRITICAL:
        return "CRITICAL"
    return "IMPORTANT" if score(pick) >= IMPORTANT else None


def paywalled(pick: Pick) -> bool:
    return pick.item.link_status == "suspected_paywall"


def format_authors(authors: list[str]) -> str:
    """The first three authors, then "et al." when there are more."""
    shown = ", ".join(authors[:SHOWN_AUTHORS])
    return f"{shown} et al." if len(authors) > SHOWN_AUTHORS else shown


def safe_url(url: str | None) -> str | None:
    """`url` if it is http(s); anything else (javascript:, data:, relative) is dropped."""
    if url and urlsplit(url.strip()).scheme.lower() in {"http", "https"}:
        return url.strip()
    return None


_ENV.filters["authors"] = format_authors
_ENV.filters["safe_url"] = safe_url
_ENV.globals.update(score=score, label=label, paywalled=paywalled, quick_chars=QUICK_SCAN_CHARS)
