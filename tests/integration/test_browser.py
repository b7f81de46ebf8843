"""A real headless Chromium against real API and worker processes: the dashboard's login, retry
button, auto-refresh and history chart, and a digest whose user text is hostile HTML."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from shared.store.sqlite import SqliteBackend
from tests.chromium import chromium
from tests.fake_arxiv import FlakyArxiv
from tests.history_rows import add_fortnight
from tests.processes import Proc, Stack, base_env
from tests.receiver import Receiver
from tests.support import API_KEY, ROOT, digest_body, wait_until

pytestmark = pytest.mark.integration

ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    with chromium(tmp_path, "--window-size=1400,1000", console=True) as driver:
        yield driver


def screenshot(driver: WebDriver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path))
    return path


def log_in(driver: WebDriver, stack: Stack) -> None:
    driver.get(f"{stack.url}/dashboard")
    driver.find_element(By.ID, "api_key").send_keys(API_KEY)
    driver.find_element(By.CSS_SELECTOR, "form[action='/dashboard/login'] button").click()
    WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.ID, "recent"))


def task_status(driver: WebDriver, task_id: str) -> str:
    cells = driver.find_elements(By.CSS_SELECTOR, f"#recent tr[data-task-id='{task_id}'] .status")
    return cells[0].text if cells else ""


def test_dashboard_retries_a_failed_task_in_a_real_browser(
    redis_url: str,
    tmp_path: Path,
    processes: Callable[..., Proc],
    start_api: Callable[[dict[str, str]], Stack],
    receiver: Receiver,
    browser: WebDriver,
) -> None:
    with FlakyArxiv(failures=1) as arxiv:
        env = base_env(
            redis_url,
            tmp_path / "paperboy.db",
            source_mode="live",
            arxiv_api_url=arxiv.url,
            digest_max_tries="1",
            heartbeat_seconds="1",
            lease_seconds="4",
        )
        stack = start_api(env)
        processes("worker", env)
        task_id = stack.post_digest(digest_body(callback_url=receiver.url)).json()["task_id"]
        assert stack.wait_status(task_id, {"completed", "failed"})["status"] == "failed"
        # The API refuses a retry while the failure's callback is still on its way.
        wait_until(lambda: stack.status(task_id)["callback_status"] == "delivered", timeout=15)

        log_in(browser, stack)
        cookie = browser.get_cookie("paperboy_session")
        failed_row = browser.find_element(By.CSS_SELECTOR, f"#failed tr[data-task-id='{task_id}']")
        failed_text = failed_row.text
        screenshot(browser, "dashboard-failed.png")
        failed_row.find_element(By.CSS_SELECTOR, "button.retry").click()
        WebDriverWait(browser, 10).until(lambda d: "done=retry" in d.current_url)
        notice = browser.find_element(By.CSS_SELECTOR, ".notice").text
        # No click from here on: the page's own refresh has to bring the outcome in.
        WebDriverWait(browser, 30, ignored_exceptions=[StaleElementReferenceException]).until(
            lambda d: task_status(d, task_id) == "completed"
        )
        screenshot(browser, "dashboard.png")
        failed_after = browser.find_elements(By.CSS_SELECTOR, "#failed tr[data-task-id]")
        workers = browser.find_elements(By.CSS_SELECTOR, "#workers tbody tr")

    assert cookie is not None
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert "source_unavailable" in failed_text
    assert notice == f"Retry requested for task {task_id}."
    assert failed_after == []
    assert len(workers) == 1
    assert browser.current_url == f"{stack.url}/dashboard"
    assert API_KEY not in browser.current_url
    done = stack.status(task_id)
    assert done["status"] == "completed"
    assert done["attempts"] == 2


HOSTILE_NAME = "<script>alert(1)</script><b>Ada</b><img src=x onerror=window.__xss=1>"
HOSTILE_GOALS = (
    "<script>window.__xss=2</script><b>retrieval-augmented generation</b> for question "
    "answering with language models <img src=x onerror=window.__xss=3>"
)


def test_a_digest_shows_hostile_user_text_as_text(
    redis_url: str,
    tmp_path: Path,
    processes: Callable[..., Proc],
    start_api: Callable[[dict[str, str]], Stack],
    browser: WebDriver,
) -> None:
    env = base_env(redis_url, tmp_path / "paperboy.db")
    stack = start_api(env)
    processes("worker", env)
    body = digest_body(
        user_info={"name": HOSTILE_NAME, "title": "<b>ML</b> engineer", "goals": HOSTILE_GOALS}
    )
    task_id = stack.post_digest(body).json()["task_id"]
    assert stack.wait_status(task_id, {"completed", "failed"})["status"] == "completed"

    # Served by the API on the dashboard's own origin, where a script would reach the session.
    log_in(browser, stack)
    browser.get(f"{stack.url}/digests/{task_id}")
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(900, min(int(height) + 160, 6000))
    screenshot(browser, "digest.png")
    text = browser.find_element(By.TAG_NAME, "body").text

    assert browser.execute_script("return window.__xss === undefined") is True
    assert browser.find_elements(By.TAG_NAME, "script") == []
    assert browser.find_elements(By.TAG_NAME, "b") == []
    assert browser.find_elements(By.TAG_NAME, "img") == []
    assert f"Hi {HOSTILE_NAME}, here is what stood out" in text


async def _fortnight(path: Path) -> None:
    store = SqliteBackend(path)
    await store.open()
    try:
        await add_fortnight(store, datetime.now(UTC))
    finally:
        await store.close()


def test_dashboard_draws_the_fortnight_in_a_real_browser(
    redis_url: str,
    tmp_path: Path,
    start_api: Callable[[dict[str, str]], Stack],
    browser: WebDriver,
) -> None:
    asyncio.run(_fortnight(tmp_path / "paperboy.db"))
    stack = start_api(base_env(redis_url, tmp_path / "paperboy.db"))

    log_in(browser, stack)
    chart = browser.find_element(By.ID, "history-chart")
    bars = browser.find_elements(By.CSS_SELECTOR, "#history-chart rect.day-bar")
    points = browser.find_elements(By.CSS_SELECTOR, "#history-chart g.cost circle")
    day_labels = [
        e.text for e in browser.find_elements(By.CSS_SELECTOR, "#history-chart .axis-days text")
    ]
    rows = browser.find_elements(By.CSS_SELECTOR, "#deliveries tbody tr")
    totals = browser.find_element(By.CSS_SELECTOR, "#deliveries .totals").text
    first_state = rows[0].find_element(By.CSS_SELECTOR, ".badge").text if rows else ""
    browser.execute_script("document.getElementById('history').scrollIntoView()")
    screenshot(browser, "dashboard-chart.png")
    blocked = [
        e["message"] for e in browser.get_log("browser") if "Content Security" in e["message"]
    ]

    assert chart.size["width"] > 600
    assert chart.size["height"] > 150
    # 13 days with digests and emails, 4 of them with failures on top of both: 26 + 2 * 4 bars.
    assert len(bars) == 34
    # Drawn at the height the server computed: no page style may resize a bar.
    zoom = chart.size["height"] / float(chart.get_attribute("height") or 1)
    for bar in bars:
        drawn = float(bar.get_attribute("height") or 0) * zoom
        assert bar.size["width"] > 0
        assert abs(bar.size["height"] - drawn) < 1.5, bar.get_attribute("class")
    assert len(points) == 14
    assert len(day_labels) == 15 and day_labels[-1] == "day (UTC)"
    assert "sent:" in totals and "ambiguous: 1" in totals and "sending: 1" in totals
    assert first_state in {"failed", "ambiguous"}
    assert len(rows) == 5
    assert blocked == []
