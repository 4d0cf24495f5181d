"""The Profile page's router: JSON endpoints through FastAPI's test client, and the page itself
in a real browser (marker ``browser``)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from profile_traces import GEMM, device_trace, host_trace

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from anyware.profile import web  # noqa: E402


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    device_trace(0, 2).write(tmp_path / "rank0.pt.trace.json")
    device_trace(1, 2, extra_gemm=30).write(tmp_path / "rank1.pt.trace.json")
    return tmp_path


@pytest.fixture
def client(run_dir: Path) -> TestClient:
    return TestClient(web.make_app(run_dir))


def test_page_and_plotly_are_served_locally(client: TestClient) -> None:
    r = client.get("/profile/")
    assert (
        r.status_code == 200
        and 'src="static/plotly.min.js"' in r.text
        and "cdn" not in r.text.lower()
    )
    js = client.get("/profile/static/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000
    assert client.get("/", follow_redirects=False).headers["location"] == "/profile/"
    assert client.get("/profile", follow_redirects=False).headers["location"].endswith("/profile/")


def test_report_endpoint(client: TestClient) -> None:
    j = client.get("/profile/api/report").json()
    assert [r["rank"] for r in j["ranks"]] == [0, 1] and j["slowest"]["rank"] == 1
    assert j["ranks"][1]["top_kernels"][0]["name"] == GEMM


def test_timeline_of_one_step(client: TestClient) -> None:
    t = client.get("/profile/api/timeline", params={"rank": 0, "step": 2}).json()
    # Step 2 launched three device events (two gemms on two streams, one nccl) and no host op.
    assert t["lanes"] == ["stream 20", "stream 7", "stream 8"]
    assert [(e["lane"], e["start_us"], e["dur_us"], e["bucket"]) for e in t["events"]] == [
        ("stream 7", 10.0, 20.0, "compute"),
        ("stream 8", 20.0, 20.0, "compute"),
        ("stream 20", 50.0, 10.0, "communication"),
    ]
    one = client.get("/profile/api/timeline", params={"rank": 0, "step": 1}).json()
    assert "thread 1" in one["lanes"] and one["total"] == 6  # 5 device events + aten::mm


def test_timeline_errors(client: TestClient) -> None:
    r = client.get("/profile/api/timeline", params={"rank": 7, "step": 1})
    assert r.status_code == 404 and "no rank 7" in r.json()["detail"]
    r = client.get("/profile/api/timeline", params={"rank": 0, "step": 9})
    assert r.status_code == 404 and "no step 9" in r.json()["detail"]


def test_export_streams_merged_trace(client: TestClient) -> None:
    r = client.get("/profile/export/merged.json")
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    events = json.loads(r.content)["traceEvents"]
    assert {e["pid"] // 1000 for e in events if e.get("cat") == "kernel"} == {0, 1}


def test_router_in_another_app_uses_its_state_dir(tmp_path: Path) -> None:
    host_trace().write(tmp_path / "rank0.json")
    app = fastapi.FastAPI()
    app.state.profile_dir = str(tmp_path)
    app.include_router(web.router, prefix="/profile")
    j = TestClient(app).get("/profile/api/report").json()
    assert j["ranks"][0]["mode"] == "host"
    empty = fastapi.FastAPI()
    empty.include_router(web.router, prefix="/profile")
    web.configure(None)
    r = TestClient(empty).get("/profile/api/report")
    assert r.status_code == 404 and "no profile directory" in r.json()["detail"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(run_dir: Path) -> Iterator[str]:
    import uvicorn

    port = _free_port()
    config = uvicorn.Config(web.make_app(run_dir), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/profile/"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.mark.browser
def test_profile_page_in_chromium(server: str, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium")
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        try:
            page = browser.new_page(accept_downloads=True)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server)
            page.wait_for_selector("#breakdown-chart .main-svg", timeout=20_000)
            page.wait_for_selector("#timeline-chart .main-svg", timeout=20_000)
            assert "Slowest rank: 1" in page.inner_text("#slowest")
            assert "Biggest cost:" in page.inner_text("#biggest")
            # breakdown: 5 buckets x 2 ranks of bars; overlap: one bar per rank
            assert page.locator("#breakdown-chart g.point").count() >= 8
            assert page.locator("#overlap-chart g.point").count() == 2
            rows = page.locator("#top-ops tbody tr")
            assert rows.count() >= 5 and "gemm_kernel" in rows.first.inner_text()
            assert page.inner_text("#host-bound") == "yes"
            comm = page.locator("#comm-ops tbody tr")
            assert comm.count() == 1 and "ncclDevKernel_AllReduce" in comm.first.inner_text()
            assert comm.first.inner_text().rstrip().endswith("40.0%")
            # pick rank 1, step 2: the extra gemm shows on the timeline
            page.select_option("#rank-select", "1")
            page.wait_for_function("document.querySelector('#step-select').options.length == 2")
            page.select_option("#step-select", "2")
            page.wait_for_function(
                "document.querySelector('#timeline-note').textContent.includes('4 of 4')"
            )
            assert page.locator("#timeline-chart g.point").count() == 4
            with page.expect_download() as dl:
                page.click("#export-link")
            saved = tmp_path / "merged.json"
            dl.value.save_as(saved)
            events = json.loads(saved.read_text())["traceEvents"]
            assert {e["pid"] // 1000 for e in events if e.get("cat") == "kernel"} == {0, 1}
            assert errors == []
        finally:
            browser.close()


def test_profile_view_serves_the_page_inside_the_dashboard(run_dir: Path) -> None:
    import os
    import subprocess
    import sys

    import httpx

    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYWARE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "anyware.cli.main", "profile", "view", str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Profile page: http://127.0.0.1:"), line + (
            proc.stderr.read() if proc.poll() is not None else ""
        )
        url = line.split()[2]
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(url + "api/report", timeout=10)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "profile view did not answer"
                time.sleep(0.2)
        assert r.status_code == 200 and r.json()["slowest"]["rank"] == 1
        # the monitor's dashboard is the app, with a link to the Profile page
        root = httpx.get(url.replace("/profile/", "/"), timeout=10, follow_redirects=True)
        assert root.status_code == 200 and 'href="/profile/"' in root.text
    finally:
        proc.terminate()
        proc.wait(timeout=20)
