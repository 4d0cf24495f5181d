"""One Perfetto-ready trace from many ranks' traces, written as a stream.

Each rank's processes (host pid, device "pid" 0, ...) get a new pid unique across ranks and a
``process_name`` prefixed with the rank, so Perfetto shows one group of lanes per rank; every
rank's timestamps are shifted onto the earliest rank's clock using ``baseTimeNanoseconds``.
When the capture ran with the monitor, its step spans (``anyware.events`` JSONL) are added as
a "monitor" lane per rank. Nothing is held in memory beyond one event at a time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from anyware.profile.reader import TraceFormatError, TraceReader
from anyware.profile.report import find_traces

#: New pids are ``rank * PID_STRIDE + n``: room for many processes per rank, readable in JSON.
PID_STRIDE = 1000


def _header(path: Path) -> dict[str, Any]:
    """The top-level keys before ``traceEvents`` (rank, base time) without reading events."""
    reader = TraceReader(path)
    events = reader.events()
    try:
        next(events, None)
    finally:
        events.close()  # closes the file
    return reader.metadata


def _rank_of(meta: dict[str, Any], order: int) -> int:
    for key in ("distributedInfo", "anyware"):
        v = meta.get(key)
        if isinstance(v, dict) and isinstance(v.get("rank"), int):
            return int(v["rank"])
    return order


def merged_chunks(path: Path, problems: list[str] | None = None) -> Iterator[str]:
    """The merged trace as JSON text chunks (for a file or an HTTP response)."""
    problems = problems if problems is not None else []
    files = find_traces(path)
    heads: list[tuple[Path, int, float]] = []
    for order, f in enumerate(files):
        try:
            meta = _header(f)
        except TraceFormatError as e:
            problems.append(f"skipped {f.name}: {e}")
            continue
        base = meta.get("baseTimeNanoseconds")
        heads.append(
            (f, _rank_of(meta, order), float(base) / 1e3 if isinstance(base, int | float) else 0.0)
        )
    base0 = min((b for _, _, b in heads if b), default=0.0)
    yield '{"displayTimeUnit": "ms", "traceEvents": [\n'
    first = True
    for f, rank, base in heads:
        shift = (base - base0) if base and base0 else 0.0
        pids: dict[Any, int] = {}
        reader = TraceReader(f)
        for ev in reader:
            old = ev.get("pid")
            new = pids.get(old)
            if new is None:
                new = pids[old] = rank * PID_STRIDE + len(pids)
                meta_ev = {
                    "ph": "M",
                    "name": "process_sort_index",
                    "pid": new,
                    "tid": 0,
                    "args": {"sort_index": new},
                }
                yield ("" if first else ",\n") + json.dumps(meta_ev)
                first = False
            ev["pid"] = new
            if ev.get("ph") == "M" and ev.get("name") == "process_name":
                args = ev.get("args")
                label = args.get("name", old) if isinstance(args, dict) else old
                ev["args"] = {"name": f"rank {rank} · {label}"}
            ts = ev.get("ts")
            if shift and isinstance(ts, int | float):
                ev["ts"] = ts + shift
            yield ("" if first else ",\n") + json.dumps(ev)
            first = False
        if reader.problem:
            problems.append(f"{f.name}: {reader.problem}")
        for ev in _monitor_spans(reader.metadata, rank, base0):
            yield ("" if first else ",\n") + json.dumps(ev)
            first = False
    yield "\n]}\n"


def _monitor_spans(meta: dict[str, Any], rank: int, base0: float) -> Iterator[dict[str, Any]]:
    aw = meta.get("anyware")
    directory = aw.get("monitor_events") if isinstance(aw, dict) else None
    if not directory or not base0:
        return
    from anyware.events import Kind, rank_file, read_events

    path = rank_file(directory, rank)
    if not path.exists():
        return
    pid = rank * PID_STRIDE + PID_STRIDE - 1
    yield {
        "ph": "M",
        "name": "process_name",
        "pid": pid,
        "tid": 0,
        "args": {"name": f"rank {rank} · monitor"},
    }
    for e in read_events(path):
        if e.kind is Kind.SPAN and e.dur is not None:
            name = e.name if e.step is None else f"{e.name} (step {e.step})"
            yield {
                "ph": "X",
                "cat": "monitor",
                "name": name,
                "pid": pid,
                "tid": 1,
                "ts": e.t * 1e6 - base0,
                "dur": e.dur * 1e6,
                "args": dict(e.attrs),
            }


def write_merged(path: Path, out: Path) -> list[str]:
    """Write the merged trace of ``path`` to ``out`` atomically; returns problems met."""
    problems: list[str] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as fh:
            for chunk in merged_chunks(path, problems):
                fh.write(chunk)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return problems
