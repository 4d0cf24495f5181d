"""Debian's chromium, driven by Playwright, watches the dashboard while two ranks train and one
produces a NaN: the fired alert appears in the page, pushed over the live stream."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.browser,
    pytest.mark.distributed,
    pytest.mark.slow,
    pytest.mark.timeout(180),
]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="needs Debian's chromium at /usr/bin/chromium"
)
def test_dashboard_shows_a_fired_alert_live(world) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(world.server.url)
            page.wait_for_function(
                "window.__anyware && window.__anyware.messages > 0", timeout=15_000
            )
            assert page.locator("#alerts tbody").inner_text().strip() == "no alerts"
            runner = threading.Thread(
                target=world.run,
                args=("nan",),
                kwargs={"steps": 60, "until": world.has_firing("nonfinite")},
            )
            runner.start()
            row = page.wait_for_selector(
                '#alerts tr[data-state="firing"][data-check="nonfinite"]', timeout=90_000
            )
            assert row is not None and row.get_attribute("data-culprit") == "1"
            assert "non-finite" in row.inner_text()
            page.wait_for_selector(
                "#loss .main-svg", timeout=10_000
            )  # the charts drew from the stream
            heat_ranks = page.evaluate("Object.keys(window.__anyware.rows).length")
            runner.join(120)
            assert heat_ranks == 2
            assert errors == []
            latencies = page.evaluate("window.__anyware.latencies")
            assert latencies and min(latencies) > -1.0  # browser and ranks share one clock here
        finally:
            browser.close()


def test_page_has_no_external_urls() -> None:
    web = Path(__file__).parents[2] / "src" / "anyware" / "monitor" / "web"
    for f in web.iterdir():
        text = f.read_text()
        assert "https://" not in text and "cdn" not in text.lower(), f
