"""The dashboard in a real browser: Debian's headless Chromium driven by Selenium through Debian's
chromium-driver (never a downloaded browser), against the real stack of tests/faults/harness.py
(redis-server, gunicorn, rq workers, rq cron) and a real HTTP consumer.

One stack and one browser per module: starting them takes seconds, and the tests of a module
follow one operator's session. Every wait is bounded.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.consumers import ConsumerServer
from tests.faults.harness import Stack

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--disable-default-apps", "--disable-extensions", "--hide-scrollbars",
         "--force-device-scale-factor=1")


def _require_chromium() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.fail(f"{' and '.join(missing)} missing: `make test-browser` installs them (Debian packages "
                    "chromium and chromium-driver)")


@pytest.fixture(scope="module")
def consumer() -> Iterator[ConsumerServer]:
    server = ConsumerServer().start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, consumer: ConsumerServer) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("stack"), consumer, retry_schedule="[1, 1]")
    try:
        running.start()
        yield running
    finally:
        running.stop()


def make_driver(javascript: bool = True) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    _require_chromium()
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument("--window-size=1280,900")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    driver.profile_dir = profile
    return driver


def close_driver(driver: Any) -> None:
    try:
        driver.quit()
    finally:
        shutil.rmtree(driver.profile_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    driver = make_driver()
    yield driver
    close_driver(driver)
