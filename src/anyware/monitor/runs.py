"""Saved runs for the dashboard's comparison view: every directory of ``rank<N>.jsonl`` next to
the live run, summarised per step (mean over ranks) from the files on disk."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from anyware.events import Kind, read_dir

_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


def list_runs(runs_dir: Path | None) -> list[dict[str, Any]]:
    if runs_dir is None or not runs_dir.is_dir():
        return []
    out: list[dict[str, Any]] = []
    for d in sorted(runs_dir.iterdir()):
        files = sorted(d.glob("rank*.jsonl")) if d.is_dir() else []
        if files:
            out.append(
                {
                    "name": d.name,
                    "ranks": len(files),
                    "mtime": max(f.stat().st_mtime for f in files),
                }
            )
    out.sort(key=lambda r: r["mtime"], reverse=True)
    return out


def run_path(runs_dir: Path | None, name: str) -> Path:
    """The run directory called ``name`` under ``runs_dir``; a name with a path in it fails."""
    if runs_dir is None or not _NAME.match(name) or name in (".", ".."):
        raise ValueError(f"no saved run {name!r}")
    p = runs_dir / name
    if not p.is_dir():
        raise ValueError(f"no saved run {name!r} in {runs_dir}")
    return p


def summarize(path: Path) -> dict[str, Any]:
    """Per step: mean loss, mean step time and compute over ranks; the run's alerts."""
    loss: dict[int, list[float]] = {}
    dur: dict[int, list[float]] = {}
    compute: dict[int, list[float]] = {}
    alerts = []
    for ev in read_dir(path):
        if ev.kind is Kind.ALERT:
            alerts.append(
                {
                    "t": ev.t,
                    "code": ev.name,
                    "step": ev.step,
                    **{k: ev.attrs.get(k) for k in ("check", "state", "culprit_rank", "message")},
                }
            )
        elif ev.step is None:
            continue
        elif (
            ev.kind is Kind.SCALAR
            and ev.name == "loss"
            and ev.value is not None
            and math.isfinite(ev.value)
        ):
            loss.setdefault(ev.step, []).append(ev.value)
        elif ev.kind is Kind.SPAN and ev.name == "step" and ev.dur is not None:
            dur.setdefault(ev.step, []).append(ev.dur)
            c = ev.attrs.get("compute")
            if isinstance(c, int | float):
                compute.setdefault(ev.step, []).append(float(c))
    steps = sorted(set(loss) | set(dur))

    def mean(d: dict[int, list[float]], s: int) -> float | None:
        v = d.get(s)
        return sum(v) / len(v) if v else None

    return {
        "name": path.name,
        "steps": steps,
        "loss": [mean(loss, s) for s in steps],
        "step_s": [mean(dur, s) for s in steps],
        "compute_s": [mean(compute, s) for s in steps],
        "alerts": alerts,
    }
