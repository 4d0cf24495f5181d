"""The migration report: per-process parts, merged by ``anyware run``, and the exit summary.

Each process of the job writes its ledger to ``$ANYWARE_MIGRATE_PARTS/<pid>.json`` when it
exits (``atexit`` for the main process and spawned children, a multiprocessing finaliser for
forked ones, which leave through ``os._exit``). ``anyware run`` merges the parts into the
contract's JSON: ``{"device", "redirects": [{"api", "count", "locations"}], "unsupported":
[{"api", "reason", "locations"}]}``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from anyware.migrate.shim._state import MAX_LOCATIONS


def merge(parts: list[dict[str, Any]], device: str) -> dict[str, Any]:
    counts: dict[str, int] = {}
    locs: dict[str, dict[str, None]] = {}
    reasons: dict[str, str] = {}
    ulocs: dict[str, dict[str, None]] = {}
    for part in parts:
        for r in part.get("redirects", []):
            counts[r["api"]] = counts.get(r["api"], 0) + int(r["count"])
            d = locs.setdefault(r["api"], {})
            for loc in r.get("locations", []):
                if len(d) < MAX_LOCATIONS:
                    d[loc] = None
        for u in part.get("unsupported", []):
            reasons.setdefault(u["api"], u["reason"])
            d = ulocs.setdefault(u["api"], {})
            for loc in u.get("locations", []):
                if len(d) < MAX_LOCATIONS:
                    d[loc] = None
    return {
        "device": device,
        "redirects": [
            {"api": a, "count": counts[a], "locations": list(locs[a])} for a in sorted(counts)
        ],
        "unsupported": [
            {"api": a, "reason": reasons[a], "locations": list(ulocs[a])} for a in sorted(reasons)
        ],
    }


def read_parts(directory: Path) -> list[dict[str, Any]]:
    out = []
    for f in sorted(directory.glob("*.json")):
        try:
            out.append(json.loads(f.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue  # a process killed mid-write leaves no usable part; the rest still count
    return out


def _short(loc: str) -> str:
    path, _, line = loc.rpartition(":")
    try:
        rel = os.path.relpath(path)
    except ValueError:
        rel = path
    return f"{rel if not rel.startswith('..') else path}:{line}"


def summary(report: dict[str, Any], *, limit: int = 12) -> str:
    """A few lines for the end of a run: what was redirected, what was not honoured."""
    red = report["redirects"]
    uns = report["unsupported"]
    total = sum(r["count"] for r in red)
    lines = [
        f"anyware migrate: ran on {report['device']}: {total} redirect(s) across {len(red)} API(s)"
        + (f", {len(uns)} not honoured" if uns else "")
    ]
    for r in sorted(red, key=lambda r: -r["count"])[:limit]:
        where = _short(r["locations"][0]) if r["locations"] else "?"
        more = f" (+{len(r['locations']) - 1} more)" if len(r["locations"]) > 1 else ""
        lines.append(f"  {r['count']:>6}  {r['api']:<44} {where}{more}")
    if len(red) > limit:
        lines.append(f"  ... {len(red) - limit} more API(s) in the --report JSON")
    for u in uns:
        where = _short(u["locations"][0]) if u["locations"] else "?"
        lines.append(f"  not honoured: {u['api']} at {where}: {u['reason']}")
    return "\n".join(lines)
