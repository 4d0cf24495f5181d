"""Nesting on the host: self time of each operator, its self intervals, its module and source.

Host events nest on each thread (``aten::linear`` contains ``aten::addmm``); an operator's
*self* time is its duration minus its children's. One walk over the events of each thread in
start order with a stack gives, per operator: its self time, the pieces of its interval not
covered by a child (the intervals a CPU-only breakdown attributes to it), and, when the trace
has Python frames (``with_stack``), the innermost ``nn.Module`` and the innermost frame in the
user's own code around it.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Any

import numpy as np

from anyware.profile.collect import RankTrace

Arr = np.ndarray[Any, Any]

#: Events turned into Python objects at a time by the walk.
BLOCK = 1 << 16

_LIBRARY_MARKERS = (
    "site-packages",
    "dist-packages",
    "/lib/python",
    "torch/",
    "<built-in",
    "<frozen",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class HostWalk:
    self_us: Arr
    """Self time per host op, aligned with ``rt.host``."""
    module: Arr
    """Name id of the innermost ``nn.Module`` frame around each op, or -1."""
    source: Arr
    """Name id of the innermost user-code frame around each op, or -1."""
    seg_start: Arr
    seg_end: Arr
    seg_op: Arr
    """Self intervals: the parts of op ``seg_op`` not covered by its children."""


def _np(a: array[Any], dtype: Any) -> Arr:
    return np.frombuffer(a, dtype=dtype).copy() if len(a) else np.zeros(0, dtype=dtype)


def walk(rt: RankTrace) -> HostWalk:
    host = rt.host
    n = len(host)
    ts = host.np("ts")
    dur = np.maximum(host.np("dur"), 0.0)
    tid = host.np("tid")
    py = rt.python
    m = len(py)
    names = rt.names
    # One stream of events: ops (kind 1) and Python frames (kind 0), by thread, start, longest
    # first, frames before ops at equal start so a frame opened with an op encloses it.
    all_ts = np.concatenate([ts, py.np("ts")])
    all_dur = np.concatenate([dur, np.maximum(py.np("dur"), 0.0)])
    all_tid = np.concatenate([tid, py.np("tid")])
    kind = np.concatenate([np.ones(n, np.int8), np.zeros(m, np.int8)])
    order = np.lexsort((kind, -all_dur, all_ts, all_tid))
    all_end = all_ts + all_dur
    del all_dur
    py_name = py.np("name").tolist()

    module_of: dict[int, int] = {}
    source_of: dict[int, int] = {}
    for nid in set(py_name):
        label = names[nid]
        is_module = label.startswith("nn.Module:")
        module_of[nid] = nid if is_module else -1
        library = is_module or any(k in label for k in _LIBRARY_MARKERS)
        source_of[nid] = -1 if library else nid

    # Typed arrays, not lists: 8 bytes an entry instead of ~32 keeps a million-op rank small.
    child = array("d", bytes(8 * n))
    module = array("q", [-1]) * n
    source = array("q", [-1]) * n
    seg_s = array("d")
    seg_e = array("d")
    seg_o = array("q")
    ops: list[tuple[int, float]] = []  # stack of (op index, end clipped to its parent)
    cursor: list[float] = []  # per stack entry: where its next self interval starts
    frames: list[tuple[float, int, int]] = []  # (end, module id, source id) of open frames
    cur_tid = None

    def close_until(t: float) -> None:
        while ops and ops[-1][1] <= t:
            k, end = ops.pop()
            c = cursor.pop()
            if end > c:
                seg_s.append(c)
                seg_e.append(end)
                seg_o.append(k)
            if cursor:
                cursor[-1] = max(cursor[-1], end)

    # Walk in blocks so only BLOCK events at a time exist as Python objects.
    for b0 in range(0, order.size, BLOCK):
        idx = order[b0 : b0 + BLOCK]
        for i, t, e, th, kd in zip(
            idx.tolist(),
            all_ts[idx].tolist(),
            all_end[idx].tolist(),
            all_tid[idx].tolist(),
            kind[idx].tolist(),
            strict=True,
        ):
            if th != cur_tid:
                close_until(float("inf"))
                frames.clear()
                cur_tid = th
            while frames and frames[-1][0] <= t:
                frames.pop()
            if kd == 0:
                nid = py_name[i - n]
                mod = module_of[nid]
                src = source_of[nid]
                if frames:
                    mod = mod if mod >= 0 else frames[-1][1]
                    src = src if src >= 0 else frames[-1][2]
                frames.append((e, mod, src))
                continue
            close_until(t)
            if frames:
                module[i] = frames[-1][1]
                source[i] = frames[-1][2]
            if ops:
                p, pend = ops[-1]
                # A child that overruns its parent (clock jitter) is clipped to the parent.
                e = min(e, pend)
                child[p] += e - t
                if t > cursor[-1]:
                    seg_s.append(cursor[-1])
                    seg_e.append(t)
                    seg_o.append(p)
                cursor[-1] = max(cursor[-1], t)
            ops.append((i, e))
            cursor.append(t)
    close_until(float("inf"))
    return HostWalk(
        self_us=np.maximum(dur - _np(child, np.float64), 0.0) if n else np.zeros(0),
        module=_np(module, np.int64),
        source=_np(source, np.int64),
        seg_start=_np(seg_s, np.float64),
        seg_end=_np(seg_e, np.float64),
        seg_op=_np(seg_o, np.int64),
    )
