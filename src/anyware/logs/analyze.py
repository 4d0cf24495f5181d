"""``anyware logs analyze``: scan every file (map), merge (reduce), name the root cause.

The merge is a pure function of the per-file :class:`~anyware.logs.scan.SourceScan` records, so
a cluster engine can run :func:`~anyware.logs.scan.scan_source` where the files live and ship
only those small records back (:mod:`anyware.logs.engine`: ``local`` threads or Dask). Locally
the files go through a thread pool of two: polars releases the GIL in its Rust readers and
regexes, so both cores stay busy with no pickling.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from anyware.events import Event, Kind
from anyware.logs.engine import Engine, map_scans
from anyware.logs.ingest import discover
from anyware.logs.lineinfo import strip_prefix
from anyware.logs.model import Finding, Role, Severity
from anyware.logs.rootcause import RankState, RootCause, find_root_cause
from anyware.logs.scan import SourceScan

_MASKS = (
    (re.compile(r"\d{4}-\d{2}-\d{2}[T _]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\S*"), "<TS>"),
    (re.compile(r"0x[0-9a-fA-F]+|\b[0-9a-fA-F]{8,}\b"), "<HEX>"),
    (re.compile(r"(?:/[\w.@-]+){2,}"), "<PATH>"),
    (re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"), "<N>"),
)


def quick_template(text: str) -> str:
    """A line with times, hex, paths and numbers masked: the key of an analysis cluster."""
    out = strip_prefix(text).strip()
    for rx, repl in _MASKS:
        out = rx.sub(repl, out)
    return out


@dataclass(slots=True, kw_only=True)
class Analysis:
    """Everything ``analyze`` reports; :meth:`to_dict` is the JSON contract."""

    root_cause: RootCause
    categories: dict[str, int]
    clusters: list[dict[str, Any]]
    ranks: list[dict[str, Any]]
    timeline: list[Event]
    files: int
    bytes: int
    lines: int
    seconds: float
    errors: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "root_cause": self.root_cause.to_dict(),
            "categories": self.categories,
            "clusters": self.clusters,
            "ranks": self.ranks,
            "timeline": [e.to_dict() for e in self.timeline],
            "files": self.files,
            "bytes": self.bytes,
            "lines": self.lines,
            "seconds": round(self.seconds, 3),
            "errors": self.errors,
        }


def analyze(
    paths: Sequence[str | os.PathLike[str]],
    *,
    workers: int = 2,
    engine: Engine | None = None,
    on_bytes: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> Analysis:
    """Analyse files, directories and globs; raises IngestError when nothing can be read.

    ``engine`` runs the per-file map (default: ``workers`` local threads); an unusable engine
    raises :class:`~anyware.logs.engine.EngineError`.
    """
    t0 = time.perf_counter()
    errors: list[str] = []
    sources = discover(paths, on_error=errors.append)
    if on_total is not None:
        on_total(sum(s.size for s in sources))
    scans = map_scans(sources, engine or Engine(workers=workers), on_bytes)
    return merge(scans, errors=errors, t0=t0)


def _rank_states(scans: list[SourceScan]) -> dict[int, RankState]:
    out: dict[int, RankState] = {}
    for sc in scans:
        for r in sc.ranks_seen:
            prog = sc.progress.get(r) or (sc.progress.get(None) if sc.rank == r else None)
            prev = out.get(r)
            step = prog.step if prog else None
            if (
                prev is not None
                and prev.last_step is not None
                and (step is None or prev.last_step >= step)
            ):
                continue
            out[r] = RankState(
                rank=r,
                host=sc.host,
                last_step=step,
                last_step_time=prog.time if prog else None,
                last_time=sc.last_t,
                file=sc.file if sc.rank == r else None,
            )
    return out


def merge(
    scans: list[SourceScan], *, errors: list[str] | None = None, t0: float | None = None
) -> Analysis:
    """The reduce step: combine per-file scans into one analysis."""
    errors = list(errors or [])
    for sc in scans:
        errors.extend(sc.errors)
    findings = [f for sc in scans for f in sc.findings]
    states = _rank_states(scans)
    rc = find_root_cause(findings, states)
    categories = dict(
        Counter(
            str(f.category)
            for f in findings
            if f.severity is Severity.ERROR or f.role is not Role.ORIGIN
        ).most_common()
    )
    return Analysis(
        root_cause=rc,
        categories=categories,
        clusters=_clusters(scans, findings, rc),
        ranks=_ranks(scans, states, findings, rc),
        timeline=_timeline(findings, rc),
        files=len(scans),
        bytes=sum(s.bytes for s in scans),
        lines=sum(s.lines for s in scans),
        seconds=time.perf_counter() - t0 if t0 is not None else 0.0,
        errors=errors,
        findings=findings,
    )


def _clusters(
    scans: list[SourceScan], findings: list[Finding], rc: RootCause, limit: int = 50
) -> list[dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}

    def add(text: str, rank: int | None, t: float | None, code: str | None, sev: str) -> None:
        key = quick_template(text)
        g = groups.get(key)
        if g is None:
            g = groups[key] = {
                "template": key[:300],
                "count": 0,
                "ranks": set(),
                "first_time": t,
                "last_time": t,
                "example": text[:300],
                "code": code,
                "severity": sev,
            }
        g["count"] += 1
        if rank is not None:
            g["ranks"].add(rank)
        if t is not None:
            g["first_time"] = t if g["first_time"] is None else min(g["first_time"], t)
            g["last_time"] = t if g["last_time"] is None else max(g["last_time"], t)

    for f in findings:
        add(f.message, f.rank, f.time, f.code, str(f.severity))
    for sc in scans:
        for text, _line, rank, t in sc.notable:
            add(text, rank, t, None, "notable")
    out = []
    for g in groups.values():
        new = rc.time is not None and g["first_time"] is not None and g["first_time"] >= rc.time
        # Rare templates and ones that first appear at/after the failure are the interesting
        # ones; a warning every rank prints every step scores near zero.
        score = (
            1.0 / (1.0 + math.log10(g["count"]))
            + (1.0 if new else 0.0)
            + (0.5 if g["code"] else 0.0)
        )
        out.append(
            {**g, "ranks": len(g["ranks"]), "new_after_failure": new, "score": round(score, 3)}
        )
    out.sort(key=lambda g: (-g["score"], g["first_time"] or 0.0))
    return out[:limit]


def _ranks(
    scans: list[SourceScan], states: dict[int, RankState], findings: list[Finding], rc: RootCause
) -> list[dict[str, Any]]:
    per = Counter(f.rank for f in findings if f.rank is not None)
    victims = set(rc.victims)
    lines: Counter[int] = Counter()
    nbytes: Counter[int] = Counter()
    for sc in scans:
        if sc.rank is not None:
            lines[sc.rank] += sc.lines
            nbytes[sc.rank] += sc.bytes
    out = []
    for r in sorted(states):
        st = states[r]
        role = "root_cause" if r == rc.rank else "victim" if r in victims else "ok"
        out.append(
            {
                "rank": r,
                "host": st.host,
                "file": st.file,
                "lines": lines[r],
                "bytes": nbytes[r],
                "last_step": st.last_step,
                "last_step_time": st.last_step_time,
                "last_time": st.last_time,
                "findings": per[r],
                "role": role,
            }
        )
    return out


def _timeline(findings: list[Finding], rc: RootCause, limit: int = 2000) -> list[Event]:
    timed = sorted(
        (f for f in findings if f.time is not None and f.rank is not None),
        key=lambda f: (f.time or 0.0, f.rank or 0),
    )
    events = []
    for f in timed[:limit]:
        assert f.time is not None and f.rank is not None
        events.append(
            Event(
                t=f.time,
                rank=f.rank,
                kind=Kind.ALERT if f.severity is Severity.ERROR else Kind.INSTANT,
                name=f.code,
                attrs={
                    "check": f.code,
                    "severity": str(f.severity),
                    "category": str(f.category),
                    "role": str(f.role),
                    "message": f.message[:200],
                    "culprit_rank": rc.rank,
                },
            )
        )
    return events
