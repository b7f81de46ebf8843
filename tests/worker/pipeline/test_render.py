import re
from datetime import date

import pytest

from paperboy_worker.pipeline.items import Analysis, Item, Pick, Profile
from paperboy_worker.pipeline.render import format_authors, render_digest, safe_url, sections

HOSTILE = "<script>alert('x')</script>"
DAY = date(2026, 11, 22)


def make_pick(n: int, relevance: float, **fields: object) -> Pick:
    values: dict[str, object] = {
        "item_id": f"arXiv:2411.{n:05d}",
        "title": f"Paper {n} on graphs & trees",
        "abstract": "An abstract.",
        "authors": ["Ada One", "Bo Two", "Cy Three", "Di Four"],
        "categories": ["cs.LG", "stat.ML"],
        "url": f"https://arxiv.org/abs/2411.{n:05d}v1",
        "pdf_url": f"https://arxiv.org/pdf/2411.{n:05d}v1",
    }
    values.update(fields)
    analysis = Analysis(
        summary=f"Summary {n}.", why_it_matters=f"Why {n}.", key_takeaway=f"Takeaway {n}."
    )
    return Pick(item=Item.model_validate(values), relevance=relevance, rank=n, analysis=analysis)


@pytest.fixture
def profile() -> Profile:
    return Profile(name="Rae", title="Engineer", goals="graph learning")


def test_digest_is_a_complete_email_safe_document(profile):
    html = render_digest(profile, DAY, [make_pick(1, 1.0)], ["Three papers today."])

    assert html.startswith("<!DOCTYPE html>")
    assert html.rstrip().endswith("</html>")
    assert '<meta charset="utf-8">' in html
    assert "max-width:640px" in html
    for forbidden in ("<script", "<style", "<link", "src=", "class=", "@import"):
        assert forbidden not in html


def test_digest_shows_picks_with_links_authors_and_analysis(profile):
    html = render_digest(profile, DAY, [make_pick(1, 1.0)], ["Three papers today."])

    assert 'href="https://arxiv.org/abs/2411.00001v1"' in html
    assert 'href="https://arxiv.org/pdf/2411.00001v1"' in html
    assert "Paper 1 on graphs &amp; trees" in html
    assert "Ada One, Bo Two, Cy Three et al." in html
    assert "Di Four" not in html
    assert "cs.LG, stat.ML" in html
    for text in ("Summary 1.", "Why 1.", "Takeaway 1.", "Three papers today."):
        assert text in html
    assert "2026-11-22" in html
    assert "22 November 2026" in html


def test_sections_split_by_relevance(profile):
    picks = [make_pick(2, 0.4), make_pick(1, 1.0), make_pick(3, 0.6)]

    html = render_digest(profile, DAY, picks, [])

    assert [s.heading for s in sections(picks)] == ["Most relevant", "Also worth a look"]
    assert [p.rank for p in sections(picks)[0].picks] == [1, 3]
    assert html.index("Most relevant") < html.index("Paper 3") < html.index("Also worth a look")
    assert html.index("Also worth a look") < html.index("Paper 2")


def test_hostile_text_is_escaped_everywhere():
    profile = Profile(name=HOSTILE, title=HOSTILE, goals=HOSTILE, news_interest=HOSTILE)
    pick = make_pick(1, 1.0, title=HOSTILE, authors=[HOSTILE], categories=[HOSTILE])
    pick = pick.model_copy(
        update={"analysis": Analysis(summary=HOSTILE, why_it_matters=HOSTILE, key_takeaway=HOSTILE)}
    )

    html = render_digest(profile, DAY, [pick], [HOSTILE])

    assert "<script" not in html.lower()
    assert "&lt;script&gt;" in html
    assert html.count("&lt;script&gt;") >= 6


def test_only_http_links_are_rendered(profile):
    pick = make_pick(1, 1.0, url="javascript:alert(1)", pdf_url="data:text/html,hi")

    html = render_digest(profile, DAY, [pick], [])

    assert "javascript:" not in html
    assert "data:text" not in html
    assert "Paper 1 on graphs" in html
    assert re.search(r"<a [^>]*href=", html) is None


def test_degraded_notice_only_when_degraded(profile):
    notice = "without the language model"

    assert notice in render_digest(profile, DAY, [make_pick(1, 1.0)], [], degraded=True)
    assert notice not in render_digest(profile, DAY, [make_pick(1, 1.0)], [])


def test_news_pick_shows_source_and_no_pdf(profile):
    pick = make_pick(1, 1.0, kind="news", source="The Wire", authors=[], pdf_url=None)

    html = render_digest(profile, DAY, [pick], [])

    assert "The Wire" in html
    assert "Read the article" in html
    assert ">PDF<" not in html


def test_empty_digest_still_renders(profile):
    html = render_digest(profile, DAY, [], [])

    assert "Nothing in today's sources matched" in html
    assert html.rstrip().endswith("</html>")


@pytest.mark.parametrize(
    ("authors", "expected"),
    [
        ([], ""),
        (["A"], "A"),
        (["A", "B", "C"], "A, B, C"),
        (["A", "B", "C", "D"], "A, B, C et al."),
    ],
)
def test_format_authors(authors, expected):
    assert format_authors(authors) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://arxiv.org/abs/1", "https://arxiv.org/abs/1"),
        (" HTTP://example.org ", "HTTP://example.org"),
        ("javascript:alert(1)", None),
        ("//evil.example", None),
        (None, None),
    ],
)
def test_safe_url(url, expected):
    assert safe_url(url) == expected
