"""Screenshot of a report for the README: ``python docs/report_screenshot.py demo_output/report.html out.png``
(``make screenshots`` makes the README's two from the demo).

Renders the page in Debian's headless Chromium (``make browser`` installs it) at a reader's window width."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("report", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=2000, help="how much of the page to show")
    parser.add_argument("--section", help="scroll to this section id first (e.g. local-explanations)")
    args = parser.parse_args()
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    with tempfile.TemporaryDirectory() as profile:
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     f"--window-size={args.width},{args.height}", f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
        try:
            driver.get(args.report.resolve().as_uri())
            if args.section:
                driver.execute_script("document.getElementById(arguments[0]).scrollIntoView();", args.section)
            driver.save_screenshot(str(args.output))
        finally:
            driver.quit()
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
