"""Interval arithmetic on numpy arrays: union, covered length, and clipping.

Breakdowns are lengths of unions: "compute time" is how long at least one compute kernel was
running, whatever the number of streams; "communication" is how long a collective ran while
no compute did, and so on down the priority order. With ``U(k)`` the union of the first ``k``
buckets' intervals, bucket ``k`` gets ``|U(k)| - |U(k-1)|`` and idle is
``span - |U(all)|`` — the same figures Holistic Trace Analysis computes with pandas
group-bys, here with one sort and one cumulative max per union.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Arr = np.ndarray[Any, Any]


def union(starts: Arr, ends: Arr) -> tuple[Arr, Arr]:
    """Merge intervals into disjoint sorted ``(starts, ends)``; touching intervals merge."""
    if starts.size == 0:
        return starts.astype(np.float64), ends.astype(np.float64)
    order = np.argsort(starts, kind="stable")
    s = starts[order]
    e = np.maximum.accumulate(ends[order])
    # A new group opens where an interval starts after everything before it has ended.
    new = np.empty(s.size, dtype=bool)
    new[0] = True
    new[1:] = s[1:] > e[:-1]
    first = np.flatnonzero(new)
    last = np.append(first[1:] - 1, s.size - 1)
    return s[first], e[last]


def covered(starts: Arr, ends: Arr) -> float:
    """Length of the union of the intervals."""
    s, e = union(starts, ends)
    return float((e - s).sum())


def clip(starts: Arr, ends: Arr, lo: float, hi: float) -> tuple[Arr, Arr]:
    """The parts of the intervals inside ``[lo, hi]`` (empty ones dropped)."""
    s = np.maximum(starts, lo)
    e = np.minimum(ends, hi)
    keep = e > s
    return s[keep], e[keep]


def layered(starts: Arr, ends: Arr, bucket: Arr, n_buckets: int) -> tuple[list[float], float]:
    """Exclusive time per bucket in priority order and the total covered length.

    Bucket ``k`` gets the time covered by some bucket-``k`` interval and by no interval of a
    bucket before it.
    """
    out: list[float] = []
    prev = 0.0
    acc_s: list[Arr] = []
    acc_e: list[Arr] = []
    for k in range(n_buckets):
        sel = bucket == k
        acc_s.append(starts[sel])
        acc_e.append(ends[sel])
        cov = (
            covered(np.concatenate(acc_s), np.concatenate(acc_e))
            if any(a.size for a in acc_s)
            else 0.0
        )
        out.append(cov - prev)
        prev = cov
    return out, prev


def overlap(a_s: Arr, a_e: Arr, b_s: Arr, b_e: Arr) -> float:
    """Length of ``union(a) ∩ union(b)``."""
    la = covered(a_s, a_e)
    lb = covered(b_s, b_e)
    lab = covered(np.concatenate([a_s, b_s]), np.concatenate([a_e, b_e]))
    return la + lb - lab
