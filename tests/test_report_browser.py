"""The report as a reader sees it: rendered by headless Chromium (Debian's chromium and chromedriver, installed
by ``make test`` when missing), every section filled, every image decoded, no console errors."""

from __future__ import annotations

import shutil

import pytest

from tell_me_why.app.report import SECTIONS

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
# The closed network refuses Chromium's background connections; these flags keep it from trying.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1200,900"]


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium and chromedriver are not installed (make test installs Debian's packages)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


@pytest.mark.slow
def test_report_renders_every_section_and_image_without_console_errors(finished_run, browser):
    _, out = finished_run
    browser.get((out / "report.html").resolve().as_uri())
    assert browser.title == "Tell Me Why report"
    for section in SECTIONS:
        filled = browser.execute_script(
            "const s = document.getElementById(arguments[0]);"
            "return s ? [s.innerText, s.querySelectorAll('img, table').length] : null;", section)
        assert filled is not None, f"section {section} missing"
        text, figures = filled
        assert figures >= 1, f"section {section} has no figure or table"
        assert "not produced by this run" not in text, section
    images = browser.execute_script(
        "return [...document.images].map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight]);")
    assert len(images) >= 8
    for alt, complete, width, height in images:
        assert complete and width > 50 and height > 50, f"image {alt!r} did not decode"
    # Every navigation link leads to a section on the page.
    targets = browser.execute_script("return [...document.querySelectorAll('nav a')].map(a => a.hash.slice(1));")
    assert targets == list(SECTIONS)
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors
