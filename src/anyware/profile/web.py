"""The Profile page: a FastAPI ``router`` the monitor's dashboard mounts under ``/profile``
(and ``anyware profile view`` serves on its own when the dashboard is not there).

Routes, relative to where the router is mounted:

* ``/`` — the page (plotly.js from the installed ``plotly`` wheel, no CDN);
* ``/api/report`` — :meth:`ProfileReport.to_json` of the profile directory;
* ``/api/timeline?rank=R&step=S`` — the events of one step of one rank, by lane;
* ``/export/merged.json`` — all ranks merged into one Perfetto trace (streamed);
* ``/static/plotly.min.js``.

The directory is ``app.state.profile_dir`` when the app sets it, else the one given to
:func:`configure`, else ``ANYWARE_PROFILE_DIR``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    StreamingResponse,
)

from anyware.profile.classify import Bucket, host_bucket

router = APIRouter()
_configured: Path | None = None
_lock = threading.Lock()
_reports: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
_traces: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
#: Events sent for one step's timeline: the longest ones; a browser draws ~5k bars smoothly.
TIMELINE_LIMIT = 5000


def configure(profile_dir: str | Path | None) -> None:
    """Set the directory the page shows (when the app does not set ``state.profile_dir``)."""
    global _configured
    _configured = None if profile_dir is None else Path(profile_dir)


def _dir(request: Request) -> Path:
    state_dir = getattr(request.app.state, "profile_dir", None)
    if state_dir:
        return Path(state_dir)
    if _configured is not None:
        return _configured
    from anyware import _env

    env = _env.PROFILE_DIR.get()
    if env:
        return Path(env)
    raise HTTPException(404, "no profile directory: start with 'anyware profile view DIR'")


def _fingerprint(path: Path) -> tuple[Any, ...]:
    from anyware.profile.report import find_traces

    files = find_traces(path)
    return (str(path), *((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files))


def _cached(
    cache: OrderedDict[tuple[Any, ...], Any], key: tuple[Any, ...], make: Any, keep: int
) -> Any:
    with _lock:
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
    value = make()
    with _lock:
        cache[key] = value
        while len(cache) > keep:
            cache.popitem(last=False)
    return value


def report_json(path: Path) -> dict[str, Any]:
    from anyware.profile.report import NoTracesError, analyze_path

    try:
        key = _fingerprint(path)
        return _cached(_reports, key, lambda: analyze_path(path).to_json(), keep=4)  # type: ignore[no-any-return]
    except NoTracesError as e:
        raise HTTPException(404, str(e)) from e


@router.get("", include_in_schema=False)
def _no_slash(request: Request) -> RedirectResponse:
    return RedirectResponse(str(request.url.path) + "/")


@router.get("/", response_class=HTMLResponse)
def page() -> HTMLResponse:
    from anyware.profile.page import PAGE

    return HTMLResponse(PAGE)


@router.get("/static/plotly.min.js", include_in_schema=False)
def plotly_js() -> FileResponse:
    import plotly

    return FileResponse(
        Path(plotly.__file__).with_name("package_data") / "plotly.min.js",
        media_type="application/javascript",
    )


@router.get("/api/report")
def api_report(request: Request) -> JSONResponse:
    return JSONResponse(report_json(_dir(request)))


@router.get("/api/timeline")
def api_timeline(request: Request, rank: int, step: int) -> JSONResponse:
    return JSONResponse(timeline(_dir(request), rank, step))


@router.get("/export/merged.json")
def export_merged(request: Request) -> StreamingResponse:
    from anyware.profile.merge import merged_chunks

    path = _dir(request)
    _fingerprint(path)  # fail early (404 via the handler below) when there is nothing to merge
    return StreamingResponse(
        merged_chunks(path),
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="merged.pt.trace.json"'},
    )


def timeline(path: Path, rank: int, step: int) -> dict[str, Any]:
    """One step of one rank: device events launched in it and host ops inside it, by lane,
    times in µs from the step's start."""
    from anyware.profile.analyze import _launch_times, _step_index
    from anyware.profile.collect import collect
    from anyware.profile.report import find_traces

    rep = report_json(path)
    entry = next((r for r in rep["ranks"] if r["rank"] == rank), None)
    if entry is None:
        raise HTTPException(404, f"no rank {rank}; ranks: {[r['rank'] for r in rep['ranks']]}")
    f = Path(entry["path"])
    if f not in find_traces(path):
        raise HTTPException(404, f"{f} is not under {path}")
    rt = _cached(_traces, (str(f), f.stat().st_mtime_ns), lambda: collect(f), keep=2)
    steps = sorted(rt.steps, key=lambda s: s[1])
    k = next((i for i, s in enumerate(steps) if s[0] == step), None)
    if k is None:
        raise HTTPException(404, f"rank {rank} has no step {step}; steps: {[s[0] for s in steps]}")
    _, t0, dur = steps[k]
    names = rt.names
    lanes: list[str] = []
    rows: list[tuple[float, float, str, str, str]] = []
    if len(rt.device):
        s = rt.device.np("ts")
        d = rt.device.np("dur")
        launch, _ = _launch_times(rt)
        sel = _step_index(np.where(np.isnan(launch), s, launch), steps) == k
        streams = np.frombuffer(rt.device_stream, dtype=np.int64)
        buckets = np.frombuffer(rt.device_bucket, dtype=np.int8)
        for i in np.flatnonzero(sel).tolist():
            rows.append(
                (
                    float(s[i]) - t0,
                    float(d[i]),
                    f"stream {int(streams[i])}",
                    names[int(rt.device.name[i])],
                    Bucket(int(buckets[i])).label,
                )
            )
    hs = rt.host.np("ts")
    hd = rt.host.np("dur")
    inside = np.flatnonzero((hs >= t0) & (hs <= t0 + dur))
    for i in inside.tolist():
        nm = names[int(rt.host.name[i])]
        tid = int(rt.host.tid[i])
        lane = f"thread {rt.thread_names.get(tid, tid)}"
        rows.append((float(hs[i]) - t0, float(hd[i]), lane, nm, host_bucket(nm).label))
    total = len(rows)
    if total > TIMELINE_LIMIT:
        rows.sort(key=lambda r: -r[1])
        rows = rows[:TIMELINE_LIMIT]
    rows.sort(key=lambda r: r[0])
    for r in rows:
        if r[2] not in lanes:
            lanes.append(r[2])
    lanes.sort(key=lambda x: (not x.startswith("stream"), x))
    return {
        "rank": rank,
        "step": step,
        "step_us": dur,
        "lanes": lanes,
        "events": [
            {"start_us": round(a, 3), "dur_us": round(b, 3), "lane": c, "name": n, "bucket": bk}
            for a, b, c, n, bk in rows
        ],
        "shown": len(rows),
        "total": total,
    }


def make_app(profile_dir: str | Path | None = None) -> FastAPI:
    """A minimal app serving only the Profile page (``/`` redirects to ``/profile/``)."""
    app = FastAPI(title="anyware profile")
    app.state.profile_dir = None if profile_dir is None else str(profile_dir)
    app.include_router(router, prefix="/profile")

    @app.get("/", include_in_schema=False)
    def _root() -> RedirectResponse:
        return RedirectResponse("/profile/")

    return app
