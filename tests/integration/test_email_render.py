"""The digest email in a real headless Chromium: at 600 and 375 px, in the light and dark colour
schemes, with hostile text in every field. Screenshots go to test-artifacts/email-*.png."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from paperboy_worker.pipeline.items import Analysis, Highlight, Item, Pick
from paperboy_worker.pipeline.render import Feedback, render_digest
from shared.models import UserInfo
from tests.chromium import Scheme, chromium, full_page_screenshot, show
from tests.support import ROOT

pytestmark = pytest.mark.integration

ARTIFACTS = ROOT / "test-artifacts"
DAY = date(2026, 11, 22)
ATTACK = (
    "<script>document.title='pwned'</script>"
    "<img src=x onerror=\"document.title='pwned'\">"
    "<iframe src=\"javascript:document.title='pwned'\"></iframe>"
)
PAGE_BACKGROUND = {"light": "rgba(244, 241, 234, 1)", "dark": "rgba(18, 20, 23, 1)"}


def pick(n: int, relevance: float, kind: str = "paper", **fields: object) -> Pick:
    item = Item.model_validate(
        {
            "item_id": f"item-{n}",
            "kind": kind,
            "title": f"Graph transformers at scale, part {n}",
            "abstract": "We scale graph transformers to billions of edges with sparse attention.",
            "authors": ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Edsger Dijkstra"],
            "categories": ["cs.LG"] if kind == "paper" else [],
            "url": f"https://arxiv.org/abs/2411.{n:05d}",
            "pdf_url": f"https://arxiv.org/pdf/2411.{n:05d}" if kind == "paper" else None,
            "source": "The Wire" if kind == "news" else None,
            **fields,
        }
    )
    analysis = Analysis(
        summary="Sparse attention lets graph transformers reach billions of edges on one GPU.",
        why_it_matters="You train GNNs on large citation graphs; this cuts your memory bill.",
        key_takeaway="Sparse attention beats message passing past a billion edges.",
        action_item="Ask your vendor about sparse attention support." if kind == "news" else None,
    )
    return Pick(item=item, relevance=relevance, rank=n, analysis=analysis)


def digest() -> str:
    picks = [
        pick(1, 0.96),
        pick(2, 0.84, kind="news", link_status="suspected_paywall"),
        pick(3, 0.7),
        pick(4, 0.4, kind="news"),
    ]
    highlights = [
        Highlight(title="Sparse attention", insight="Two picks scale attention.", type="trend"),
        Highlight(title="Graph transformers", insight="Start with part 1.", type="paper"),
    ]
    profile = UserInfo(name="Rae", goals="graph learning")
    return render_digest(
        profile,
        DAY,
        picks,
        highlights,
        feedback=Feedback(url="https://forms.example/paperboy"),
    )


def hostile_digest() -> str:
    profile = UserInfo(name=ATTACK, title=ATTACK, goals=ATTACK, news_interest=ATTACK)
    attacked = pick(
        1, 0.95, kind="news", title=ATTACK, source=ATTACK, url="javascript:alert(1)", authors=[]
    )
    attacked.analysis = Analysis(
        summary=ATTACK, why_it_matters=ATTACK, key_takeaway=ATTACK, action_item=ATTACK
    )
    quick = pick(2, 0.2, title=ATTACK, abstract=ATTACK, authors=[ATTACK], categories=[ATTACK])
    quick.analysis = None
    highlights = [Highlight(title=ATTACK, insight=ATTACK, type="news")]
    feedback = Feedback(url="javascript:document.title='pwned'")
    return render_digest(profile, DAY, [attacked, quick], highlights, feedback=feedback)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    with chromium(tmp_path, "--hide-scrollbars") as driver:
        yield driver


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [600, 375])
def test_the_email_renders_at_both_widths_in_both_schemes(
    browser: WebDriver, tmp_path: Path, width: int, scheme: Scheme
) -> None:
    page = tmp_path / "digest.html"
    page.write_text(digest(), encoding="utf-8")

    show(browser, page, width=width, scheme=scheme)
    shot = full_page_screenshot(browser, width, ARTIFACTS / f"email-{width}-{scheme}.png")

    # Nothing overflows sideways: the 600 px layout shrinks to a phone.
    assert browser.execute_script("return document.documentElement.scrollWidth") <= width
    body = browser.find_element(By.TAG_NAME, "body")
    assert body.value_of_css_property("background-color") == PAGE_BACKGROUND[scheme]
    text = body.text
    for band in ("Directly relevant to your work", "Expand your knowledge", "Quick scan"):
        assert band in text
    for label in ("CRITICAL", "IMPORTANT", "PAYWALL", "Score 96/100"):
        assert label in text
    for stat in ("PAPERS", "NEWS", "READING TIME", "TIME SAVED", "16 min", "60 min"):
        assert stat in text
    assert "Ask your vendor about sparse attention support." in text
    cta = browser.find_element(By.CLASS_NAME, "cta-button")
    assert cta.is_displayed()
    assert cta.get_attribute("href") == "https://forms.example/paperboy"
    # The preheader is for the inbox list, not the reader of the open mail.
    assert "min read, picked for Rae" not in text
    assert shot.stat().st_size > 10_000


def test_hostile_text_renders_as_text_and_nothing_runs(browser: WebDriver, tmp_path: Path) -> None:
    page = tmp_path / "hostile.html"
    page.write_text(hostile_digest(), encoding="utf-8")

    show(browser, page, width=600, scheme="light")

    assert browser.title == "Paperboy digest for Sunday 22 November 2026"
    for tag in ("script", "img", "iframe"):
        assert browser.find_elements(By.TAG_NAME, tag) == []
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018
    hrefs = [a.get_attribute("href") or "" for a in browser.find_elements(By.TAG_NAME, "a")]
    assert not [href for href in hrefs if not href.startswith("https://")]
    assert browser.find_elements(By.CLASS_NAME, "cta-button") == []
    assert browser.find_element(By.TAG_NAME, "body").text.count("<script>") >= 10
