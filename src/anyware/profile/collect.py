"""One pass over one rank's trace into compact columns.

The reader hands out events one at a time; this module keeps only what the analysis needs, as
typed arrays (8 bytes a number) instead of dicts (~600 bytes an event): device-stream events,
host operators, Python frames (when stacks were recorded), runtime calls (kernel launches),
profiler steps and memory peaks. Names are interned into one table per rank. A 1 GB trace of
~2.5 M events becomes ~60 MB of columns, and the file itself is never held in memory.
"""

from __future__ import annotations

import re
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anyware.profile.classify import Bucket, device_bucket, host_span_bucket
from anyware.profile.reader import TraceReader

_RANK_IN_NAME = re.compile(r"rank[_-]?(\d+)", re.IGNORECASE)
_STEP = re.compile(r"ProfilerStep\s*#\s*(\d+)")
_HOST_CATS = frozenset({"cpu_op", "operator"})
_ANNOTATION_CATS = frozenset({"user_annotation", "cpu_instant_event"})
_SKIP_DEVICE_CATS = frozenset({"gpu_user_annotation", "Trace", "ac2g", "fwdbwd"})


def _f() -> array[float]:
    return array("d")


def _i() -> array[int]:
    return array("q")


@dataclass(kw_only=True)
class Columns:
    """Parallel arrays of one kind of event; ``name`` indexes :attr:`RankTrace.names`."""

    ts: array[float] = field(default_factory=_f)
    dur: array[float] = field(default_factory=_f)
    name: array[int] = field(default_factory=_i)
    tid: array[int] = field(default_factory=_i)
    key: array[int] = field(default_factory=_i)
    """Device: correlation id; host op: External id; runtime: correlation id."""
    ext: array[int] = field(default_factory=_i)
    """Device: External id of the launching op; runtime: 1 if it launches a kernel."""

    def __len__(self) -> int:
        return len(self.ts)

    def np(self, col: str) -> np.ndarray[Any, Any]:
        a = getattr(self, col)
        return (
            np.frombuffer(a, dtype=np.float64 if a.typecode == "d" else np.int64)
            if len(a)
            else np.zeros(0, np.float64 if a.typecode == "d" else np.int64)
        )


@dataclass(kw_only=True)
class MemoryPeak:
    device: str
    """``cpu`` or ``<type>:<index>`` as the trace names it."""
    peak_allocated: int = 0
    peak_reserved: int = 0
    at_ts: float = 0.0


@dataclass(kw_only=True)
class RankTrace:
    """Everything the analysis keeps of one rank's trace."""

    path: Path
    rank: int
    rank_source: str
    """Where the rank number came from: distributedInfo, anyware, file name or order."""
    metadata: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    device: Columns = field(default_factory=Columns)
    device_bucket: array[int] = field(default_factory=lambda: array("b"))
    device_stream: array[int] = field(default_factory=_i)
    host: Columns = field(default_factory=Columns)
    python: Columns = field(default_factory=Columns)
    runtime: Columns = field(default_factory=Columns)
    steps: list[tuple[int, float, float]] = field(default_factory=list)
    """(step number, ts, dur) of each ``ProfilerStep#N``, in µs."""
    memory: dict[str, MemoryPeak] = field(default_factory=dict)
    thread_names: dict[int, str] = field(default_factory=dict)
    events: int = 0
    skipped: int = 0

    @property
    def world_size(self) -> int | None:
        info = self.metadata.get("distributedInfo")
        ws = info.get("world_size") if isinstance(info, dict) else None
        if ws is None and isinstance(self.metadata.get("anyware"), dict):
            ws = self.metadata["anyware"].get("world_size")
        return int(ws) if isinstance(ws, int | float) else None

    @property
    def run_id(self) -> str | None:
        aw = self.metadata.get("anyware")
        return str(aw["run_id"]) if isinstance(aw, dict) and aw.get("run_id") else None

    @property
    def base_us(self) -> float:
        """Offset that turns the trace's ``ts`` into microseconds since the epoch."""
        base = self.metadata.get("baseTimeNanoseconds")
        return float(base) / 1e3 if isinstance(base, int | float) else 0.0


def collect(path: Path, *, order: int = 0) -> RankTrace:
    """Read ``path`` once; raises :class:`~anyware.profile.reader.TraceFormatError` only when
    the file is not a trace at all (truncation is recorded in ``problems``)."""
    reader = TraceReader(path)
    rt = RankTrace(path=path, rank=order, rank_source="order", metadata=reader.metadata)
    ids: dict[str, int] = {}
    names = rt.names
    bucket_of: dict[int, int] = {}
    span_kept: dict[str, bool] = {}

    def intern(n: str) -> int:
        i = ids.get(n)
        if i is None:
            i = ids[n] = len(names)
            names.append(n)
        return i

    dev, host, py, rtm = rt.device, rt.host, rt.python, rt.runtime
    skipped = 0
    for ev in reader:
        ph = ev.get("ph")
        if ph == "X":
            ts = ev.get("ts")
            dur = ev.get("dur")
            name = ev.get("name")
            if (
                not isinstance(ts, int | float)
                or not isinstance(dur, int | float)
                or not isinstance(name, str)
            ):
                skipped += 1
                continue
            cat = ev.get("cat")
            args = ev.get("args")
            if not isinstance(args, dict):
                args = {}
            if cat in _ANNOTATION_CATS:
                m = _STEP.match(name)
                if m:
                    rt.steps.append((int(m.group(1)), float(ts), float(dur)))
                    continue
                keep = span_kept.get(name) if cat == "user_annotation" else False
                if keep is None:
                    keep = span_kept[name] = host_span_bucket(name) is not None
                if not keep:
                    continue
                # a collective's or a wait's span: one more host "operator", below
            if cat in _HOST_CATS or cat in _ANNOTATION_CATS:
                host.ts.append(ts)
                host.dur.append(dur)
                host.name.append(intern(name))
                host.tid.append(_int(ev.get("tid")))
                host.key.append(_int(args.get("External id")))
                host.ext.append(0)
            elif cat == "python_function":
                py.ts.append(ts)
                py.dur.append(dur)
                py.name.append(intern(name))
                py.tid.append(_int(ev.get("tid")))
            elif isinstance(cat, str) and (
                cat.endswith("_runtime") or cat.endswith("_driver") or cat == "runtime"
            ):
                rtm.ts.append(ts)
                rtm.dur.append(dur)
                rtm.name.append(intern(name))
                rtm.tid.append(_int(ev.get("tid")))
                rtm.key.append(_int(args.get("correlation")))
                rtm.ext.append(1 if "aunch" in name else 0)
            elif cat not in _SKIP_DEVICE_CATS:
                stream = args.get("stream")
                if isinstance(stream, int) and stream >= 0:
                    n = intern(name)
                    b = bucket_of.get(n)
                    if b is None:
                        b = bucket_of[n] = int(
                            device_bucket(name, cat if isinstance(cat, str) else None)
                        )
                    dev.ts.append(ts)
                    dev.dur.append(dur)
                    dev.name.append(n)
                    dev.tid.append(_int(ev.get("tid")))
                    dev.key.append(_int(args.get("correlation")))
                    dev.ext.append(_int(args.get("External id")))
                    rt.device_bucket.append(b)
                    rt.device_stream.append(stream)
        elif ph == "i" or ph == "I":
            if ev.get("name") == "[memory]":
                _memory(rt, ev)
        elif ph == "M" and ev.get("name") == "thread_name":
            args = ev.get("args")
            if isinstance(args, dict) and isinstance(args.get("name"), str):
                rt.thread_names[_int(ev.get("tid"))] = args["name"]
    rt.events = reader.events_read
    rt.skipped = skipped
    if reader.problem:
        rt.problems.append(f"{path.name}: {reader.problem}; analysing the events before it")
    _assign_rank(rt, order)
    cut = rt.metadata.get("anyware_cut")
    if isinstance(cut, dict) and isinstance(cut.get("partial_step"), int):
        n = cut["partial_step"]
        if any(s[0] == n for s in rt.steps):
            rt.steps = [s for s in rt.steps if s[0] != n]
            rt.problems.append(
                f"{path.name}: the program ended during step {n}; that partial step is left out"
            )
    return rt


def _int(v: Any) -> int:
    if isinstance(v, int):
        return v
    try:
        return int(v)
    except (TypeError, ValueError):
        return -1


def _memory(rt: RankTrace, ev: dict[str, Any]) -> None:
    args = ev.get("args")
    if not isinstance(args, dict):
        return
    dev_id = _int(args.get("Device Id"))
    dev_type = _int(args.get("Device Type"))
    key = "cpu" if dev_type == 0 or dev_id < 0 else f"device:{dev_id}"
    alloc = _int(args.get("Total Allocated"))
    reserved = _int(args.get("Total Reserved"))
    peak = rt.memory.get(key)
    if peak is None:
        peak = rt.memory[key] = MemoryPeak(device=key)
    if alloc > peak.peak_allocated:
        peak.peak_allocated = alloc
        ts = ev.get("ts")
        peak.at_ts = float(ts) if isinstance(ts, int | float) else 0.0
    peak.peak_reserved = max(peak.peak_reserved, reserved)


def _assign_rank(rt: RankTrace, order: int) -> None:
    info = rt.metadata.get("distributedInfo")
    if isinstance(info, dict) and isinstance(info.get("rank"), int):
        rt.rank, rt.rank_source = info["rank"], "distributedInfo"
        return
    aw = rt.metadata.get("anyware")
    if isinstance(aw, dict) and isinstance(aw.get("rank"), int):
        rt.rank, rt.rank_source = aw["rank"], "anyware"
        return
    m = _RANK_IN_NAME.search(rt.path.name)
    if m:
        rt.rank, rt.rank_source = int(m.group(1)), "file name"
        return
    rt.rank, rt.rank_source = order, "order"


__all__ = ["Bucket", "Columns", "MemoryPeak", "RankTrace", "collect"]
