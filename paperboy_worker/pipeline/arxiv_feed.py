"""Parse the arXiv API's Atom feed into items, safely, and load the bundled sample."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from paperboy_worker.pipeline.items import Item

if TYPE_CHECKING:
    # Type only: parsing goes through defusedxml.
    from xml.etree.ElementTree import Element

ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"
OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"
SAMPLE_PATH = Path(__file__).resolve().parent.parent / "samples" / "arxiv_sample.xml"

_VERSION = re.compile(r"v\d+$")
_WHITESPACE = re.compile(r"\s+")


class FeedError(ValueError):
    """The arXiv feed is malformed, unsafe or reports an error."""


def parse_feed(xml: bytes) -> list[Item]:
    """Items from an arXiv API Atom response, in feed order; entries without an id are skipped."""
    root = _parse(xml)
    items = (_entry_item(entry) for entry in root.iter(f"{ATOM}entry"))
    return [item for item in items if item is not None]


def total_results(xml: bytes) -> int:
    """The query's total hit count (`opensearch:totalResults`), for paging."""
    node = _parse(xml).find(f"{OPENSEARCH}totalResults")
    text = _text(node)
    if not text.isdigit():
        raise FeedError(f"arXiv feed has no usable totalResults: {text!r}")
    return int(text)


def filter_categories(items: Iterable[Item], categories: Sequence[str]) -> list[Item]:
    """Items listed in at least one of `categories` (exact arXiv category names)."""
    wanted = set(categories)
    return [item for item in items if wanted.intersection(item.categories)]


async def load_sample(path: Path | None, categories: Sequence[str]) -> list[Item]:
    """The bundled sample feed (or `path`), read off the event loop, filtered by category."""
    items = await asyncio.to_thread(_read_feed, path or SAMPLE_PATH)
    return filter_categories(items, categories)


def _read_feed(path: Path) -> list[Item]:
    return parse_feed(path.read_bytes())


def _parse(xml: bytes) -> Element:
    try:
        # arXiv never sends a DTD, so refusing one rules out entity expansion and XXE outright.
        root: Element = fromstring(xml, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise FeedError(f"unsafe XML in arXiv feed rejected: {type(exc).__name__}") from exc
    except ParseError as exc:
        raise FeedError(f"malformed arXiv feed: {exc}") from exc
    if root.tag != f"{ATOM}feed":
        raise FeedError(f"not an Atom feed: root element is {root.tag!r}")
    return root


def _entry_item(entry: Element) -> Item | None:
    raw_id = _text(entry.find(f"{ATOM}id"))
    if not raw_id:
        return None
    if "/api/errors" in raw_id:
        # arXiv reports a bad query as a feed whose single entry describes the error.
        raise FeedError(f"arXiv API error: {_text(entry.find(f'{ATOM}summary'))}")
    arxiv_id = _VERSION.sub("", raw_id.rsplit("/abs/", 1)[-1])
    categories = _categories(entry)
    primary = entry.find(f"{ARXIV}primary_category")
    return Item(
        item_id=f"arXiv:{arxiv_id}",
        title=_text(entry.find(f"{ATOM}title")),
        abstract=_text(entry.find(f"{ATOM}summary")),
        authors=[_text(name) for name in entry.iterfind(f"{ATOM}author/{ATOM}name")],
        categories=categories,
        primary_category=primary.get("term") if primary is not None else None,
        published=_text(entry.find(f"{ATOM}published")) or None,
        url=_link(entry, rel="alternate") or raw_id,
        pdf_url=_link(entry, title="pdf"),
    )


def _categories(entry: Element) -> list[str]:
    terms = (node.get("term", "").strip() for node in entry.iterfind(f"{ATOM}category"))
    return list(dict.fromkeys(term for term in terms if term))


def _link(entry: Element, *, rel: str | None = None, title: str | None = None) -> str | None:
    for link in entry.iterfind(f"{ATOM}link"):
        rel_ok = rel is None or link.get("rel") == rel
        if rel_ok and (title is None or link.get("title") == title):
            return link.get("href")
    return None


def _text(node: Element | None) -> str:
    if node is None or node.text is None:
        return ""
    return _WHITESPACE.sub(" ", node.text).strip()
