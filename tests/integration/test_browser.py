"""A real headless Chromium against real API and worker processes: the dashboard's login, retry
button and auto-refresh, and a digest whose user text is hostile HTML."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.processes import FlakyArxiv, Proc, Receiver, Stack, base_env
from tests.support import API_KEY, ROOT, digest_body, wait_until

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = ROOT / "test-artifacts"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1000",
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    if missing:
        pytest.fail(
            f"Chromium is not installed ({', '.join(missing)} missing): "
            "run `make install` (it installs chromium and chromium-driver)"
        )
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    # A path to the driver means Selenium Manager never runs, so nothing is downloaded.
    service = Service(
        executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log")
    )
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


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
