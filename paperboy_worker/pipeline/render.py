"""Render a digest as one email-safe HTML document (tables, inline CSS, everything escaped)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from paperboy_worker.pipeline.items import Pick, Profile

MOST_RELEVANT = 0.6
SHOWN_AUTHORS = 3

_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class Section:
    heading: str
    picks: list[Pick]


def render_digest(
    profile: Profile,
    source_date: date,
    picks: list[Pick],
    highlights: list[str],
    *,
    degraded: bool = False,
) -> str:
    """The digest for `profile` as a complete HTML document, picks grouped by relevance."""
    template = _ENV.get_template("digest.html")
    return template.render(
        profile=profile,
        day=f"{source_date:%A} {source_date.day} {source_date:%B %Y}",
        iso_day=source_date.isoformat(),
        sections=sections(picks),
        highlights=highlights,
        degraded=degraded,
    )


def sections(picks: list[Pick]) -> list[Section]:
    """Picks grouped by relevance, each group in rank order; empty groups are left out."""
    ordered = sorted(picks, key=lambda pick: pick.rank)
    groups = [
        Section("Most relevant", [p for p in ordered if p.relevance >= MOST_RELEVANT]),
        Section("Also worth a look", [p for p in ordered if p.relevance < MOST_RELEVANT]),
    ]
    return [group for group in groups if group.picks]


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
