"""Headless Chromium for tests that look at rendered HTML: a page at a given width, in the
light or dark colour scheme, and a full-page screenshot of it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
Scheme = Literal["light", "dark"]


def missing() -> list[str]:
    """The Chromium files that are not installed (`make install` installs them)."""
    return [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]


@contextmanager
def chromium(profile_dir: Path, *extra_flags: str, console: bool = False) -> Iterator[WebDriver]:
    """Headless Chromium with its own profile; `console` keeps the page's console messages
    (CSP reports land there) for `driver.get_log("browser")`."""
    absent = missing()
    if absent:
        raise AssertionError(
            f"Chromium is not installed ({', '.join(absent)} missing): "
            "run `make install` (it installs chromium and chromium-driver)"
        )
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, *extra_flags):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir / 'chromium-profile'}")
    if console:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # A path to the driver means Selenium Manager never runs, so nothing is downloaded.
    service = Service(
        executable_path=str(CHROMEDRIVER), log_output=str(profile_dir / "chromedriver.log")
    )
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def show(driver: WebDriver, page: Path, *, width: int, scheme: Scheme) -> None:
    """Load `page` in a viewport `width` CSS pixels wide, with `prefers-color-scheme` set."""
    features = [{"name": "prefers-color-scheme", "value": scheme}]
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": features})
    _viewport(driver, width, 800)
    driver.get(page.as_uri())


def full_page_screenshot(driver: WebDriver, width: int, path: Path) -> Path:
    """A screenshot of the whole page at `width`, however long it is."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    _viewport(driver, width, height)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(path))
    return path


def _viewport(driver: WebDriver, width: int, height: int) -> None:
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
