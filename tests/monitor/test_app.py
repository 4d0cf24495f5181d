"""The aggregator's web app: ingest validation, dashboard assets without a CDN, the live stream,
saved runs, Prometheus text, and the token rule for non-loopback addresses."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from anyware.events import Event, EventWriter, Kind, rank_file
from anyware.monitor.aggregator import Aggregator
from anyware.monitor.app import MAX_BODY_BYTES, create_app
from anyware.monitor.serve import serve_in_thread
from anyware.monitor.testing import step


def make(tmp_path: Path, token: str | None = None):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    agg = Aggregator(events_dir=tmp_path / "live")
    return agg, TestClient(create_app(agg, token=token))


def test_malformed_and_oversized_records_are_rejected_and_counted(tmp_path: Path) -> None:
    agg, c = make(tmp_path)
    good = {"t": time.time(), "rank": 0, "step": 0, "kind": "scalar", "name": "loss", "value": 1.0}
    r = c.post("/api/ingest", content=b"{not json")
    assert r.status_code == 400
    r = c.post("/api/ingest", json={"events": []})  # no rank
    assert r.status_code == 400
    r = c.post("/api/ingest", content=b"x" * (MAX_BODY_BYTES + 1))
    assert r.status_code == 413
    bad = [
        {"t": "yesterday", "rank": 0, "kind": "span", "name": "x"},
        {"t": 1.0, "rank": 0, "kind": "bogus", "name": "x"},
        {"t": 1.0, "rank": 0, "kind": "span", "name": "forward"},  # span without dur
        {**good, "attrs": {"blob": "y" * 100_000}},
        "not an object",
    ]
    r = c.post("/api/ingest", json={"rank": 0, "events": [good, *bad]})
    assert r.status_code == 200 and r.json()["accepted"] == 1 and r.json()["rejected"] == 5
    assert dict(agg.state.rejected) == {"malformed": 2, "oversized": 2, "schema": 4}
    assert c.get("/healthz").json() == {"status": "ok"}  # still up
    text = c.get("/metrics").text
    assert 'anyware_monitor_ingest_rejected_total{reason="oversized"} 2.0' in text
    assert "anyware_monitor_ingest_records_total 1.0" in text


def test_metrics_are_prometheus_text(tmp_path: Path) -> None:
    agg, c = make(tmp_path)
    for s in range(3):
        for r in range(2):
            step(agg.state, r, s, t=1000.0 + s, compute=0.02, loss=2.5 - s)
    r = c.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = r.text.splitlines()
    for line in lines:
        assert (
            line.startswith("# HELP ")
            or line.startswith("# TYPE ")
            or line.startswith("anyware_monitor_")
        ), line
    assert 'anyware_monitor_step{rank="1"} 3.0' in lines
    assert 'anyware_monitor_loss{rank="0"} 0.5' in lines
    assert 'anyware_monitor_alerts_firing{check="hang"} 0.0' in lines


def test_dashboard_uses_only_local_assets(tmp_path: Path) -> None:
    _, c = make(tmp_path)
    html = c.get("/").text
    assert "https://" not in html and "http://" not in html
    assert '<script src="/static/plotly.min.js">' in html
    js = c.get("/static/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000
    assert "EventSource" in c.get("/static/dashboard.js").text
    assert c.get("/static/../app.py").status_code == 404


def test_profile_page_is_mounted_when_available(tmp_path: Path) -> None:
    from anyware.monitor.app import profile_router

    _, c = make(tmp_path)
    html = c.get("/").text
    if profile_router() is None:
        assert 'href="/profile/"' not in html
    else:
        assert 'href="/profile/"' in html
        assert c.get("/profile/").status_code == 200


def test_token_required_when_set(tmp_path: Path) -> None:
    agg, c = make(tmp_path, token="s3cret")
    assert c.get("/").status_code == 401
    assert c.post("/api/ingest", json={"rank": 0, "events": []}).status_code == 401
    assert agg.state.rejected["unauthorized"] == 1
    assert c.get("/?token=s3cret").status_code == 200
    assert c.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    with pytest.raises(ValueError, match="needs a token"):
        serve_in_thread(agg, host="0.0.0.0")


def test_saved_runs_compare(tmp_path: Path) -> None:
    _, c = make(tmp_path)
    old = tmp_path / "old"
    with EventWriter(rank_file(old, 0)) as w:
        for s in range(4):
            w.write(
                Event(t=1000.0 + s, rank=0, step=s, kind=Kind.SCALAR, name="loss", value=3.0 - s)
            )
            w.write(
                Event(
                    t=1000.0 + s,
                    rank=0,
                    step=s,
                    kind=Kind.SPAN,
                    name="step",
                    dur=0.1,
                    attrs={"compute": 0.08},
                )
            )
    runs = c.get("/api/runs").json()
    assert [r["name"] for r in runs["runs"]] == ["old"] and runs["current"] == "live"
    summary = c.get("/api/runs/old").json()
    assert summary["steps"] == [0, 1, 2, 3] and summary["loss"] == [3.0, 2.0, 1.0, 0.0]
    assert c.get("/api/runs/..").status_code == 404
    assert c.get("/api/runs/nope").status_code == 404


def test_live_stream_delivers_rows_and_alerts(tmp_path: Path) -> None:
    agg = Aggregator(events_dir=tmp_path / "live")
    h = serve_in_thread(agg)
    try:
        step(agg.state, 0, 0, t=time.time(), compute=0.01, world=1)
        with httpx.stream("GET", f"http://{h.addr}/api/stream", timeout=10) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if line.startswith("data: "):
                    msg = json.loads(line[6:])
                    break
        assert msg["rows"][0]["step"] == 0 and "snapshot" in msg
        assert msg["snapshot"]["ranks"][0]["rank"] == 0
    finally:
        h.stop()
