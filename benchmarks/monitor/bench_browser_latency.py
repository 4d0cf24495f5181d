"""Event-to-browser latency: from the end of a step on a rank to the row arriving in the
dashboard page (Debian's chromium through Playwright), through the real path: hot path → ring
buffer → shipper (10 Hz) → POST → aggregator → SSE (10 Hz) → page.

Target: p95 < 1 s. Anchor: TensorBoard reloads event files every 30 s by default; W&B's
dashboard refreshes in seconds.

    python benchmarks/monitor/bench_browser_latency.py [--steps 300]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from anyware.monitor.aggregator import Aggregator
from anyware.monitor.scenarios import run_world
from anyware.monitor.serve import serve_in_thread

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def main() -> None:
    from playwright.sync_api import sync_playwright

    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=300)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        agg = Aggregator(events_dir=Path(tmp) / "run")
        server = serve_in_thread(agg)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(server.url)
            page.wait_for_function(
                "window.__anyware && window.__anyware.messages > 0", timeout=15_000
            )
            run_world(
                "clean", addr=server.addr, events=Path(tmp) / "run", steps=a.steps, timeout=180
            )
            page.wait_for_timeout(500)
            lat = sorted(page.evaluate("window.__anyware.latencies"))
            render = sorted(page.evaluate("window.__anyware.renderMs"))
        finally:
            browser.close()
            server.stop()
    n = len(lat)
    p50, p95 = statistics.median(lat), lat[min(n - 1, int(0.95 * n))]
    print(f"event-to-browser latency over {n} step rows (2 ranks × {a.steps} steps)")
    print(f"  p50 {p50 * 1e3:7.1f} ms   p95 {p95 * 1e3:7.1f} ms   max {lat[-1] * 1e3:7.1f} ms")
    if render:
        print(
            f"  chart redraw: median {statistics.median(render):.0f} ms, max {render[-1]:.0f} ms ({len(render)} redraws)"
        )
    print(f"  p95 vs target 1 s: {p95 / 1.0:.3f}×   vs TensorBoard's 30 s reload: {p95 / 30:.4f}×")


if __name__ == "__main__":
    main()
