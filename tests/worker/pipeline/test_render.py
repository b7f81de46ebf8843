import re
from datetime import date

import pytest

from paperboy_worker.pipeline.items import Analysis, Highlight, HighlightType, Item, Pick
from paperboy_worker.pipeline.render import (
    Feedback,
    Stats,
    format_authors,
    label,
    render_digest,
    safe_url,
    sections,
    stats,
)
from shared.models import UserInfo

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
def profile() -> UserInfo:
    return UserInfo(name="Rae", title="Engineer", goals="graph learning")


def highlight(insight: str, title: str = "Graphs", kind: HighlightType = "trend") -> Highlight:
    return Highlight(title=title, insight=insight, type=kind)


HIGHLIGHTS = [highlight("Three papers today.")]


def test_digest_is_a_complete_email_safe_document(profile):
    html = render_digest(profile, DAY, [make_pick(1, 1.0)], HIGHLIGHTS)

    assert html.startswith("<!DOCTYPE html>")
    assert html.rstrip().endswith("</html>")
    assert '<meta charset="utf-8">' in html
    assert 'width="600"' in html
    assert "max-width: 600px" in html
    for forbidden in ("<script", "<link", "src=", "@import"):
        assert forbidden not in html


def test_css_is_inlined_and_only_media_queries_stay_in_a_style_block(profile):
    html = render_digest(profile, DAY, [make_pick(1, 1.0)], HIGHLIGHTS)

    styles = re.findall(r"<style>(.*?)</style>", html, re.DOTALL)
    assert len(styles) == 1
    assert "@media (prefers-color-scheme: dark)" in styles[0]
    assert "@media screen and (max-width: 620px)" in styles[0]
    outside = re.sub(r"@media[^{]*\{(?:[^{}]*\{[^{}]*\})*[^{}]*\}", "", styles[0])
    assert outside.strip() == ""
    # every styled element carries its style itself, for clients that drop <style>
    for tag in re.findall(r"<[a-z]+ [^>]*class=\"[^\"]*\"[^>]*>", html):
        assert 'style="' in tag, tag
    assert '<meta name="color-scheme" content="light dark">' in html


def test_digest_shows_picks_with_links_authors_and_analysis(profile):
    html = render_digest(profile, DAY, [make_pick(1, 1.0)], HIGHLIGHTS)

    assert 'href="https://arxiv.org/abs/2411.00001v1"' in html
    assert 'href="https://arxiv.org/pdf/2411.00001v1"' in html
    assert "Paper 1 on graphs &amp; trees" in html
    assert "Ada One, Bo Two, Cy Three et al." in html
    assert "Di Four" not in html
    assert "cs.LG, stat.ML" in html
    for text in ("Summary 1.", "Why 1.", "Takeaway 1.", "Three papers today.", "Graphs"):
        assert text in html
    assert "2026-11-22" in html
    assert "22 November 2026" in html


def test_picks_fall_in_three_bands_with_labels_and_scores(profile):
    picks = [make_pick(1, 0.95), make_pick(2, 0.85), make_pick(3, 0.8), make_pick(4, 0.7)]
    picks += [make_pick(5, 0.6), make_pick(6, 0.3)]

    html = render_digest(profile, DAY, picks, [])

    bands = sections(picks)
    assert [b.heading for b in bands] == [
        "Directly relevant to your work",
        "Expand your knowledge",
        "Quick scan",
    ]
    assert [[p.rank for p in b.picks] for b in bands] == [[1, 2, 3], [4, 5], [6]]
    assert [label(p) for p in picks] == ["CRITICAL", "IMPORTANT", "IMPORTANT", None, None, None]
    order = ["Directly relevant", "Paper 1 ", "Paper 3 ", "Expand your", "Paper 5 ", "Quick scan"]
    assert [html.index(text) for text in order] == sorted(html.index(text) for text in order)
    assert html.count(">CRITICAL<") == 1
    assert html.count(">IMPORTANT<") == 2
    assert "Score 95/100" in html
    assert "Score 30/100" in html
    # a quick-scan entry is one short line with a link
    quick = html[html.index("Quick scan") :]
    assert "Read &rarr;" in quick or "Read \u2192" in quick
    assert "Why this matters" not in quick


def test_stats_and_preheader(profile):
    picks = [make_pick(1, 1.0), make_pick(2, 0.9), make_pick(3, 0.5, kind="news")]

    html = render_digest(profile, DAY, picks, [])

    assert stats(picks) == Stats(papers=2, news=1, reading_minutes=13, saved_minutes=45)
    preheader = re.search(r'<div style="display:none;[^>]*>(.*?)</div>', html)
    assert preheader is not None
    assert preheader.group(1) == "2 papers, 1 news, 13 min read, picked for Rae."
    assert re.search(r">13 min</p>.*Reading time", html, re.DOTALL)
    assert re.search(r">45 min</p>.*Time saved", html, re.DOTALL)


def test_news_shows_its_action_item_and_a_paywall_label(profile):
    news = make_pick(1, 0.9, kind="news", link_status="suspected_paywall", source="The Wire")
    news.analysis = Analysis(
        summary="S.", why_it_matters="W.", key_takeaway="K.", action_item="Call your vendor."
    )
    open_news = make_pick(2, 0.9, kind="news", link_status="accessible")

    html = render_digest(profile, DAY, [news, open_news], [])

    assert "<strong>Action:</strong> Call your vendor." in html
    assert html.count(">PAYWALL<") == 1
    assert html.index(">PAYWALL<") < html.index("Paper 2")


@pytest.mark.parametrize(
    ("feedback", "link"),
    [
        (Feedback(url="https://forms.example/paperboy"), "https://forms.example/paperboy"),
        (Feedback(email="team@paperboy.example"), "mailto:team@paperboy.example?subject="),
        (
            Feedback(url="https://forms.example/f", email="team@paperboy.example"),
            "https://forms.example/f",
        ),
    ],
)
def test_feedback_call_to_action(profile, feedback, link):
    html = render_digest(profile, DAY, [make_pick(1, 1.0)], [], feedback=feedback)

    assert html.count("Help shape Paperboy") == 1
    anchor = re.search(r'<a class="cta-button"[^>]*>', html)
    assert anchor is not None
    assert f'href="{link}' in anchor.group(0)
    assert 'target="_blank"' in anchor.group(0)
    assert 'rel="noopener"' in anchor.group(0)
    assert html.index("Help shape Paperboy") < html.index("Paperboy digest for Rae")


@pytest.mark.parametrize(
    "feedback", [None, Feedback(), Feedback(url="javascript:alert(1)"), Feedback(email="nobody")]
)
def test_no_call_to_action_without_a_usable_target(profile, feedback):
    html = render_digest(profile, DAY, [make_pick(1, 1.0)], [], feedback=feedback)

    assert "Help shape Paperboy" not in html
    assert "javascript:" not in html


def test_hostile_text_is_escaped_everywhere():
    profile = UserInfo(name=HOSTILE, title=HOSTILE, goals=HOSTILE, news_interest=HOSTILE)
    pick = make_pick(
        1, 1.0, kind="news", title=HOSTILE, authors=[HOSTILE], categories=[HOSTILE], source=HOSTILE
    )
    pick.analysis = Analysis(
        summary=HOSTILE, why_it_matters=HOSTILE, key_takeaway=HOSTILE, action_item=HOSTILE
    )
    quick = make_pick(2, 0.1, title=HOSTILE)
    feedback = Feedback(email=f"{HOSTILE}@example.org")

    html = render_digest(
        profile, DAY, [pick, quick], [highlight(HOSTILE, HOSTILE)], feedback=feedback
    )

    assert "<script" not in html.lower()
    assert "&lt;script&gt;" in html
    assert html.count("&lt;script&gt;") >= 11


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
    assert "PDF" not in html


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
