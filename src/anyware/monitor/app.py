"""The aggregator's web app: ingest, live stream (SSE), dashboard, saved runs, /metrics.

Everything the browser loads comes from this process: the page and its script from this
package, plotly.js from the installed ``plotly`` wheel (no CDN). When the profiler's web module
is installed its router is mounted under ``/profile`` and the page links to it.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)

from anyware.events import EventError
from anyware.monitor import metrics, runs

if TYPE_CHECKING:
    from anyware.monitor.aggregator import Aggregator

#: A POST body above this is refused (413) before it is parsed; shippers send ≤ 2000 records.
MAX_BODY_BYTES = 8 * 2**20
#: The live stream's cadence: well under the 1 s event-to-browser target.
STREAM_INTERVAL_S = 0.1
SNAPSHOT_EVERY_S = 0.5


def plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/Inf become the strings the event schema uses."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean(v) for v in obj]
    return obj


def dumps(obj: Any) -> str:
    return json.dumps(clean(obj), separators=(",", ":"), allow_nan=False, default=str)


def profile_router() -> Any:
    try:
        from anyware.profile import web  # type: ignore[attr-defined]

        return web.router
    except Exception:
        return None


def create_app(agg: Aggregator, *, token: str | None = None) -> FastAPI:
    app = FastAPI(title="anyware monitor", docs_url=None, redoc_url=None, openapi_url=None)
    web = resources.files("anyware.monitor") / "web"
    router = profile_router()
    if router is not None:
        app.include_router(router, prefix="/profile")

    @app.middleware("http")
    async def auth(request: Request, call_next: Any) -> Any:
        if token is not None:
            given = request.query_params.get("token") or ""
            header = request.headers.get("authorization", "")
            if header.lower().startswith("bearer "):
                given = header[7:].strip()
            if not secrets.compare_digest(given.encode(), token.encode()):
                if request.url.path == "/api/ingest":
                    agg.state.reject("unauthorized")
                return JSONResponse(
                    {"error": "this monitor needs its token (?token=... or Authorization: Bearer)"},
                    status_code=401,
                )
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        html = (web / "index.html").read_text(encoding="utf-8")
        nav = '<a href="/profile/">Profile</a>' if router is not None else ""
        return html.replace("<!--PROFILE_NAV-->", nav)

    @app.get("/static/plotly.min.js")
    def plotly_asset() -> FileResponse:
        return FileResponse(plotly_js(), media_type="application/javascript")

    @app.get("/static/{name}")
    def asset(name: str) -> Response:
        types = {"dashboard.js": "application/javascript", "dashboard.css": "text/css"}
        if name not in types:
            return JSONResponse({"error": f"no asset {name!r}"}, status_code=404)
        return Response((web / name).read_text(encoding="utf-8"), media_type=types[name])

    @app.post("/api/ingest")
    async def ingest(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            agg.state.reject("oversized")
            return JSONResponse({"error": f"body over {MAX_BODY_BYTES} bytes"}, status_code=413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                agg.state.reject("oversized")
                return JSONResponse({"error": f"body over {MAX_BODY_BYTES} bytes"}, status_code=413)
            chunks.append(chunk)
        try:
            payload = json.loads(b"".join(chunks))
        except (ValueError, UnicodeDecodeError):
            agg.state.reject("malformed")
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        try:
            answer = agg.ingest(payload)
        except EventError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        return JSONResponse(answer)

    @app.get("/api/state")
    def state() -> Response:
        return Response(dumps(agg.snapshot()), media_type="application/json")

    @app.get("/api/rows")
    def rows(since: int = 0) -> Response:
        with agg.state.lock:
            out, cursor = agg.state.rows_since(since)
        return Response(dumps({"rows": out, "cursor": cursor}), media_type="application/json")

    @app.get("/api/stream")
    async def stream(request: Request, since: int = 0) -> StreamingResponse:
        async def events() -> Any:
            cursor = since
            snap_at = 0.0
            alerts_version = -1
            while not await request.is_disconnected():
                now = time.time()
                with agg.state.lock:
                    new, cursor = agg.state.rows_since(cursor)
                msg: dict[str, Any] = {"server_t": now, "cursor": cursor, "rows": new[-5000:]}
                if now - snap_at >= SNAPSHOT_EVERY_S or agg.alerts.version != alerts_version:
                    alerts_version = agg.alerts.version
                    msg["snapshot"] = agg.snapshot()
                    snap_at = now
                if new or "snapshot" in msg:
                    yield f"data: {dumps(msg)}\n\n"
                await asyncio.sleep(STREAM_INTERVAL_S)

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    @app.get("/api/runs")
    def list_saved() -> Response:
        current = agg.events_dir.name if agg.events_dir else None
        return Response(
            dumps({"current": current, "runs": runs.list_runs(agg.runs_dir)}),
            media_type="application/json",
        )

    @app.get("/api/runs/{name}")
    def saved(name: str) -> Response:
        try:
            path = runs.run_path(agg.runs_dir, name)
        except ValueError as e:
            return JSONResponse({"error": str(e)}, status_code=404)
        return Response(dumps(runs.summarize(path)), media_type="application/json")

    @app.get("/metrics")
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(agg), media_type=metrics.CONTENT_TYPE)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
